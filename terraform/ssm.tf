# SSM: the bootstrap command document, the secrets (SecureString) and the
# configuration document every Lambda loads at cold start.

resource "aws_ssm_document" "runner" {
  name            = local.ssm_document_name
  document_type   = "Command"
  document_format = "YAML"
  content         = file("${path.module}/../scripts/runner/ssm-document.yaml")
  tags            = local.tags
}

# --- secrets: given as values (created here) or as existing parameter names ---

resource "aws_ssm_parameter" "webhook_secret" {
  #checkov:skip=CKV_AWS_337:SecureString under the account's aws/ssm key by default; set parameter_kms_key_arn to use a customer-managed key.
  count = var.webhook_secret_parameter == null ? 1 : 0

  name   = "${local.ssm_prefix}/webhook/secret"
  type   = "SecureString"
  value  = var.webhook_secret
  key_id = var.parameter_kms_key_arn
  tags   = local.tags

  lifecycle {
    precondition {
      condition     = var.webhook_secret != null
      error_message = "Give webhook_secret (stored by this module) or webhook_secret_parameter (an existing parameter)."
    }
  }
}

resource "aws_ssm_parameter" "github_app_private_key" {
  #checkov:skip=CKV_AWS_337:SecureString under the account's aws/ssm key by default; set parameter_kms_key_arn to use a customer-managed key.
  count = var.github_auth_type == "app" && var.github_app_private_key_parameter == null ? 1 : 0

  name   = "${local.ssm_prefix}/github/app-private-key"
  type   = "SecureString"
  tier   = "Standard"
  value  = var.github_app_private_key
  key_id = var.parameter_kms_key_arn
  tags   = local.tags

  lifecycle {
    precondition {
      condition     = var.github_app_private_key != null
      error_message = "Give github_app_private_key (stored by this module) or github_app_private_key_parameter (an existing parameter)."
    }
  }
}

resource "aws_ssm_parameter" "github_pat" {
  #checkov:skip=CKV_AWS_337:SecureString under the account's aws/ssm key by default; set parameter_kms_key_arn to use a customer-managed key.
  count = var.github_auth_type == "pat" && var.github_pat_parameter == null ? 1 : 0

  name   = "${local.ssm_prefix}/github/pat"
  type   = "SecureString"
  value  = var.github_pat
  key_id = var.parameter_kms_key_arn
  tags   = local.tags

  lifecycle {
    precondition {
      condition     = var.github_pat != null
      error_message = "Give github_pat (stored by this module) or github_pat_parameter (an existing parameter)."
    }
  }
}

locals {
  # A parameter name as a secret reference / ARN path part: always with a leading '/'.
  webhook_secret_name          = var.webhook_secret_parameter == null ? aws_ssm_parameter.webhook_secret[0].name : "/${trimprefix(var.webhook_secret_parameter, "/")}"
  webhook_previous_secret_name = var.webhook_previous_secret_parameter == null ? null : "/${trimprefix(var.webhook_previous_secret_parameter, "/")}"

  github_credential_name = var.github_auth_type == "app" ? (
    var.github_app_private_key_parameter == null ? aws_ssm_parameter.github_app_private_key[0].name : "/${trimprefix(var.github_app_private_key_parameter, "/")}"
    ) : (
    var.github_pat_parameter == null ? aws_ssm_parameter.github_pat[0].name : "/${trimprefix(var.github_pat_parameter, "/")}"
  )

  # SSM names in ARNs drop the leading '/': parameter/<name without it>.
  webhook_secret_arns = [
    for n in compact([local.webhook_secret_name, local.webhook_previous_secret_name]) :
    "${local.ssm_parameter_arn_prefix}/${trimprefix(n, "/")}"
  ]
  # The App's id, when it is read from a parameter (written by `spotrunner github-app create`).
  github_app_id_name = var.github_auth_type == "app" && var.github_app_id_parameter != null ? "/${trimprefix(var.github_app_id_parameter, "/")}" : null
  github_credential_arns = [
    for n in compact([local.github_credential_name, local.github_app_id_name]) :
    "${local.ssm_parameter_arn_prefix}/${trimprefix(n, "/")}"
  ]
  config_parameter_arn = "${local.ssm_parameter_arn_prefix}/${trimprefix(local.config_parameter, "/")}"
  jit_parameters_arn   = "${local.ssm_parameter_arn_prefix}/${trimprefix(local.jit_prefix, "/")}*"
}

# --- the configuration document (crates/core/src/config; deny_unknown_fields) ---

locals {
  # The App id is a number, or (github_app_id_parameter) an ssm: reference.
  github_app_id_json = var.github_app_id != null ? jsonencode(var.github_app_id) : jsonencode("ssm:${coalesce(local.github_app_id_name, "/missing")}")
  github_auth_json = var.github_auth_type == "app" ? format(
    "{\"type\":\"app\",\"app_id\":%s,\"private_key\":%s}",
    local.github_app_id_json,
    jsonencode("ssm:${coalesce(local.github_credential_name, "/missing")}")
    ) : jsonencode({
      type  = "pat"
      token = "ssm:${coalesce(local.github_credential_name, "/missing")}"
  })

  config = {
    deployment = var.prefix
    github = {
      api_url = var.github_api_url
      auth    = jsondecode(local.github_auth_json)
    }
    webhook = {
      secrets = [for n in compact([local.webhook_secret_name, local.webhook_previous_secret_name]) : "ssm:${n}"]
    }
    allowed_owners            = var.allowed_owners
    allowed_repositories      = var.allowed_repositories
    allow_public_repositories = var.allow_public_repositories
    max_total_weight          = var.max_total_weight
    runner_version            = var.runner_version
    recovery                  = var.recovery
    pools = [for p in var.pools : merge({
      name               = p.name
      labels             = p.labels
      launch_template    = aws_launch_template.pool[p.name].name
      instance_types     = p.instance_types
      architecture       = local.pool_arch[p.name]
      subnets            = p.subnets
      capacity_type      = p.capacity_type
      on_demand_fallback = p.on_demand_fallback
      max_runners        = p.max_runners
      weight             = p.weight
      runner_group       = p.runner_group
      scope              = p.scope
      boot_timeout_secs  = p.boot_timeout_secs
      idle_timeout_secs  = p.idle_timeout_secs
      max_run_time_secs  = p.max_run_time_secs
      startup_script     = p.startup_script
      check_job_queued   = p.check_job_queued
      spot               = p.spot
      hot                = p.hot
      runner_user        = p.runner_user
      # allow_unverified_runner only when set (the document omits false).
      allow_unverified_runner = p.allow_unverified_runner
    }, try(local.pool_sizing[p.name], {}), p.allow_public_repositories == null ? {} : { allow_public_repositories = p.allow_public_repositories })]
  }
  # A pool's `sizing`, only for pools that set it; disk_gib is the launch
  # template's root volume (a launch cannot grow it).
  pool_sizing = { for p in var.pools : p.name => {
    sizing = {
      cpu      = p.sizing.cpu
      ram_gib  = p.sizing.ram_gib
      families = p.sizing.families
      base_cpu = p.sizing.base_cpu
      disk_gib = p.root_volume_size_gb
    }
  } if p.sizing != null }
  config_json = jsonencode(local.config)
}

resource "aws_ssm_parameter" "config" {
  #checkov:skip=CKV_AWS_337:The document holds secret references (ssm:/...), not secret values; SecureString under aws/ssm by default, set parameter_kms_key_arn for a customer-managed key.
  name        = local.config_parameter
  description = "spotrunner configuration document (JSON) for deployment ${var.prefix}"
  type        = "SecureString"
  tier        = var.config_parameter_tier
  value       = local.config_json
  key_id      = var.parameter_kms_key_arn
  tags        = local.tags

  lifecycle {
    precondition {
      condition     = var.github_auth_type != "app" || ((var.github_app_id != null) != (var.github_app_id_parameter != null))
      error_message = "github_auth_type = app needs exactly one of github_app_id and github_app_id_parameter."
    }
    precondition {
      condition     = var.max_total_weight == null || alltrue([for p in var.pools : p.weight <= var.max_total_weight])
      error_message = "A pool's weight exceeds max_total_weight: no runner of it could ever start."
    }
  }
}
