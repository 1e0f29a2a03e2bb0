# The runner instances' roles: one per pool (<prefix>-runner-<pool>), so that
# a pool's startup script and its extra policies reach its own jobs only.
#
# Each role has
# - <prefix>-runner-<pool> (inline): the allow-list, what the instance needs;
# - <prefix>-runner-<pool>-guardrails (inline): explicit Denies on the
#   deployment's parameters, KMS, the bucket (other pools' startup scripts
#   included) and, per credential_binding, credentials used away from the
#   instance's VPC and address;
# - three managed policies every runner role shares (explicit Denies):
#   <prefix>-runner-guardrails-plane (ledger, queues, functions, SSM document,
#   instances, launch templates, our roles and policies),
#   <prefix>-runner-guardrails-infra (the runners' volumes, snapshots, network
#   interfaces, the pools' security groups, custom AMI parameters) and
#   <prefix>-runner-guardrails-watch (EventBridge rules, event source
#   mappings, the webhook API, log groups, alarms, the dashboard);
# - runner_extra_policy_arns and the pool's extra_policy_arns.
# An explicit Deny wins over every Allow: no extra policy (AdministratorAccess
# included) re-opens what the guardrails deny. scripts/iam/matrix.mjs proves it
# over the roles as deployed.

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "runner" {
  for_each = local.pools

  name               = "${var.prefix}-runner-${each.key}"
  description        = "spotrunner ${var.prefix}: runner instances of pool ${each.key} (SSM agent, own JIT parameter, bucket reads)"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = merge(local.tags, { "spotrunner:pool" = each.key })
}

resource "aws_iam_instance_profile" "runner" {
  for_each = local.pools

  name = "${var.prefix}-runner-${each.key}"
  role = aws_iam_role.runner[each.key].name
  tags = merge(local.tags, { "spotrunner:pool" = each.key })
}

# What the jobs may add: every pool's (runner_extra_policy_arns), then the
# pool's own (extra_policy_arns).
resource "aws_iam_role_policy_attachment" "runner_extra" {
  for_each = merge([
    for pool, p in local.pools : {
      for arn in distinct(concat(var.runner_extra_policy_arns, p.extra_policy_arns)) : "${pool} ${arn}" => { pool = pool, arn = arn }
    }
  ]...)

  role       = aws_iam_role.runner[each.value.pool].name
  policy_arn = each.value.arn
}

resource "aws_iam_role_policy_attachment" "runner_guardrails" {
  for_each = merge([
    for pool, _ in local.pools : { for g in keys(local.runner_guardrail_policies) : "${pool} ${g}" => { pool = pool, guardrail = g } }
  ]...)

  role       = aws_iam_role.runner[each.value.pool].name
  policy_arn = aws_iam_policy.runner_guardrails[each.value.guardrail].arn
}

locals {
  # Every parameter of the module and every secret the configuration names.
  secret_parameter_arns = distinct(concat(local.github_credential_arns, local.webhook_secret_arns, [local.config_parameter_arn]))
  module_parameter_arns = distinct(concat(["${local.ssm_parameter_arn_prefix}/${var.prefix}/*"], local.secret_parameter_arns))

  # GetParametersByPath is authorised on the path: every ancestor of those
  # parameters, the root included ("/" is parameter/).
  parameter_path_arns = distinct(flatten([
    ["${local.ssm_parameter_arn_prefix}/", "${local.ssm_parameter_arn_prefix}/${var.prefix}"],
    [for arn in local.secret_parameter_arns : [
      for i in range(1, length(split("/", trimprefix(arn, "${local.ssm_parameter_arn_prefix}/")))) :
      "${local.ssm_parameter_arn_prefix}/${join("/", slice(split("/", trimprefix(arn, "${local.ssm_parameter_arn_prefix}/")), 0, i))}"
    ]],
  ]))

  bucket_arn    = aws_s3_bucket.runner.arn
  function_arns = [for fn in keys(local.lambda_settings) : "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${var.prefix}-${fn}"]

  own_instance = "$${ec2:SourceInstanceARN}"

  # A pool's startup script (s3.tf uploads it when the pool has one).
  startup_script_key = { for name, _ in local.pools : name => "startup/${name}.sh" }

  # Each pool's credential binding: off, endpoints (default) or strict.
  credential_binding = { for name, p in local.pools : name => coalesce(p.credential_binding, var.runner_credential_binding) }

  iam_arn                = "arn:${local.partition}:iam::${local.account_id}"
  runner_role_arns       = [for name, _ in local.pools : "${local.iam_arn}:role/${var.prefix}-runner-${name}"]
  runner_profile_arns    = [for name, _ in local.pools : "${local.iam_arn}:instance-profile/${var.prefix}-runner-${name}"]
  runner_guardrail_names = { for g in ["plane", "infra", "watch"] : g => "${var.prefix}-runner-guardrails-${g}" }

  # Custom resolve:ssm: AMI parameters (not AWS's public /aws/service/ ones,
  # which nobody but AWS can write): a job must not be able to change the image
  # of every later runner.
  custom_ami_parameter_arns = distinct([
    for name, p in local.pools : "${local.ssm_parameter_arn_prefix}/${trimprefix(split(":", trimprefix(p.ami, "resolve:ssm:"))[0], "/")}"
    if p.ami != null && startswith(coalesce(p.ami, "-"), "resolve:ssm:") && !startswith(coalesce(p.ami, "-"), "resolve:ssm:/aws/service/")
  ])

  # The log groups, alarms and rules of the deployment (guardrails-watch).
  log_group_arns = concat(
    [for g in aws_cloudwatch_log_group.lambda : g.arn],
    [for g in aws_cloudwatch_log_group.api : g.arn],
  )
  alarm_arns = concat(
    [aws_cloudwatch_metric_alarm.dlq_not_empty.arn, aws_cloudwatch_metric_alarm.oldest_job.arn, aws_cloudwatch_metric_alarm.runner_version_behind.arn],
    [aws_cloudwatch_metric_alarm.webhook_bad_signatures.arn],
    [for a in aws_cloudwatch_metric_alarm.other_dlq_not_empty : a.arn],
    [for a in aws_cloudwatch_metric_alarm.lambda_errors : a.arn],
    [for a in aws_cloudwatch_metric_alarm.queue_time : a.arn],
    [for a in aws_cloudwatch_metric_alarm.log_alarm : a.arn],
  )
  event_rule_arns = concat(
    [for r in aws_cloudwatch_event_rule.stop_runner : r.arn],
    [for r in aws_cloudwatch_event_rule.schedule : r.arn],
  )
  event_source_mapping_arns = [
    for m in concat(values(aws_lambda_event_source_mapping.create_runner), [aws_lambda_event_source_mapping.stop_runner]) :
    "arn:${local.partition}:lambda:${local.region}:${local.account_id}:event-source-mapping:${m.uuid}"
  ]
  security_group_arns = distinct(flatten([for name, ids in local.pool_security_group_ids : [for id in ids : "${local.ec2_arn}:security-group/${id}"]]))
  ours = {
    test     = "StringEquals"
    variable = "aws:ResourceTag/${local.deployment_tag}"
    values   = [var.prefix]
  }
}

data "aws_iam_policy_document" "runner" {
  for_each = local.pools

  # The SSM agent, for Run Command: its heartbeat and association poll, and
  # the message channels (ec2messages; ssmmessages control channel). No data
  # channel: no Session Manager sessions. The heartbeat is limited to EC2
  # instances of this account and region; IAM has no key for "this instance"
  # here (a Resource of only ${ec2:SourceInstanceARN} is not a valid ARN), and
  # SSM binds it to the calling instance's identity.
  statement {
    sid       = "SsmAgentHeartbeat"
    actions   = ["ssm:UpdateInstanceInformation", "ssm:ListInstanceAssociations"]
    resources = [local.instance_arn]
  }

  statement {
    sid = "SsmAgentMessages"
    actions = [
      "ec2messages:AcknowledgeMessage",
      "ec2messages:DeleteMessage",
      "ec2messages:FailMessage",
      "ec2messages:GetEndpoint",
      "ec2messages:GetMessages",
      "ec2messages:SendReply",
      "ssmmessages:CreateControlChannel",
      "ssmmessages:OpenControlChannel",
    ]
    resources = ["*"]
  }

  # Read, then delete, only the JIT parameter create-runner bound to this
  # instance: tag spotrunner:instance-arn = the instance's ARN, the value of
  # the ec2:SourceInstanceARN key every request made with instance-profile
  # credentials carries. Both spellings of the tag key SSM evaluates.
  statement {
    sid       = "OwnJitParameter"
    actions   = ["ssm:GetParameter", "ssm:DeleteParameter"]
    resources = [local.jit_parameters_arn]
    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/spotrunner:instance-arn"
      values   = [local.own_instance]
    }
  }

  statement {
    sid       = "OwnJitParameterByResourceTag"
    actions   = ["ssm:GetParameter", "ssm:DeleteParameter"]
    resources = [local.jit_parameters_arn]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/spotrunner:instance-arn"
      values   = [local.own_instance]
    }
  }

  # bootstrap.sh, the runner cache and the pool's own startup script only.
  statement {
    sid     = "ReadRunnerBucket"
    actions = ["s3:GetObject"]
    resources = concat(
      ["${local.bucket_arn}/${local.bootstrap_script_key}", "${local.bucket_arn}/runner-cache/*"],
      each.value.startup_script == null ? [] : ["${local.bucket_arn}/${local.startup_script_key[each.key]}"],
    )
  }

  dynamic "statement" {
    for_each = var.runner_cache_upload ? [1] : []
    content {
      # Only new objects (If-None-Match: *): a job cannot replace a cached
      # tarball, but can still plant one for a version not cached yet.
      sid       = "FillRunnerCache"
      actions   = ["s3:PutObject"]
      resources = ["${local.bucket_arn}/runner-cache/*"]
      condition {
        test     = "StringEquals"
        variable = "s3:if-none-match"
        values   = ["*"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.parameter_kms_key_arn == null ? [] : [1]
    content {
      sid       = "DecryptJitParameter"
      actions   = ["kms:Decrypt"]
      resources = [var.parameter_kms_key_arn]
      condition {
        test     = "StringLike"
        variable = "kms:EncryptionContext:PARAMETER_ARN"
        values   = [local.jit_parameters_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["ssm.${local.region}.amazonaws.com"]
      }
    }
  }
}

# Guardrails of one pool's role: the deployment's parameters, KMS, the bucket
# (other pools' startup scripts included) and the credential binding.
data "aws_iam_policy_document" "runner_guardrails" {
  for_each = local.pools

  # --- SSM parameters ---
  statement {
    sid         = "DenyParameterChanges"
    effect      = "Deny"
    not_actions = ["ssm:GetParameter", "ssm:DeleteParameter"]
    resources   = local.module_parameter_arns
  }

  statement {
    sid       = "DenySecretParameters"
    effect    = "Deny"
    actions   = ["ssm:GetParameter", "ssm:DeleteParameter"]
    resources = local.secret_parameter_arns
  }

  statement {
    # Any parameter of the deployment not bound to this very instance (either
    # tag key spelling must match; a missing tag never does).
    sid       = "DenyParametersOfOthers"
    effect    = "Deny"
    actions   = ["ssm:GetParameter", "ssm:DeleteParameter"]
    resources = ["${local.ssm_parameter_arn_prefix}/${var.prefix}/*"]
    condition {
      test     = "StringNotEquals"
      variable = "ssm:resourceTag/spotrunner:instance-arn"
      values   = [local.own_instance]
    }
    condition {
      test     = "StringNotEquals"
      variable = "aws:ResourceTag/spotrunner:instance-arn"
      values   = [local.own_instance]
    }
  }

  statement {
    sid       = "DenyParametersWithoutInstanceIdentity"
    effect    = "Deny"
    actions   = ["ssm:GetParameter", "ssm:DeleteParameter"]
    resources = ["${local.ssm_parameter_arn_prefix}/${var.prefix}/*"]
    condition {
      test     = "Null"
      variable = "ec2:SourceInstanceARN"
      values   = ["true"]
    }
  }

  statement {
    sid       = "DenyParameterPaths"
    effect    = "Deny"
    actions   = ["ssm:GetParametersByPath"]
    resources = local.parameter_path_arns
  }

  # --- KMS: nothing but JIT parameters, whatever the key ---
  statement {
    sid       = "DenySecretDecryption"
    effect    = "Deny"
    actions   = ["kms:Decrypt", "kms:ReEncryptFrom"]
    resources = ["*"]
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:PARAMETER_ARN"
      values   = local.module_parameter_arns
    }
    condition {
      test     = "StringNotLike"
      variable = "kms:EncryptionContext:PARAMETER_ARN"
      values   = [local.jit_parameters_arn]
    }
  }

  dynamic "statement" {
    for_each = var.parameter_kms_key_arn == null ? [] : [1]
    content {
      sid       = "DenyParameterKeyOutsideJit"
      effect    = "Deny"
      actions   = ["kms:Decrypt"]
      resources = [var.parameter_kms_key_arn]
      condition {
        test     = "StringNotLike"
        variable = "kms:EncryptionContext:PARAMETER_ARN"
        values   = [local.jit_parameters_arn]
      }
    }
  }

  dynamic "statement" {
    for_each = var.parameter_kms_key_arn == null ? [] : [1]
    content {
      sid         = "DenyParameterKeyManagement"
      effect      = "Deny"
      not_actions = ["kms:Decrypt"]
      resources   = [var.parameter_kms_key_arn]
    }
  }

  # --- the bucket: what the next runner executes ---
  statement {
    sid         = "DenyBootstrapWrites"
    effect      = "Deny"
    not_actions = ["s3:GetObject", "s3:GetObjectVersion"]
    resources   = ["${local.bucket_arn}/${local.bootstrap_script_key}", "${local.bucket_arn}/startup/*"]
  }

  dynamic "statement" {
    # Another pool's startup script is that pool's business only.
    for_each = length(local.pools) > 1 ? [1] : []
    content {
      sid       = "DenyOtherPoolsStartupScripts"
      effect    = "Deny"
      actions   = ["s3:*"]
      resources = [for name, key in local.startup_script_key : "${local.bucket_arn}/${key}" if name != each.key]
    }
  }

  statement {
    sid         = "DenyRunnerCacheChanges"
    effect      = "Deny"
    not_actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"]
    resources   = ["${local.bucket_arn}/runner-cache/*"]
  }

  statement {
    # Without runner_cache_upload no upload at all; with it, new objects only.
    sid       = "DenyRunnerCacheOverwrite"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${local.bucket_arn}/runner-cache/*"]
    dynamic "condition" {
      for_each = var.runner_cache_upload ? [1] : []
      content {
        test     = "StringNotEquals"
        variable = "s3:if-none-match"
        values   = ["*"]
      }
    }
  }

  statement {
    # The .sha256 sidecars mark a tarball verified against GitHub's published
    # checksum; only the control plane (recovery's runner-cache task) writes them.
    sid       = "DenyRunnerCacheChecksums"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${local.bucket_arn}/runner-cache/*.sha256"]
  }

  statement {
    sid         = "DenyBucketChanges"
    effect      = "Deny"
    not_actions = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources   = [local.bucket_arn]
  }

  # --- credential binding (runner_credential_binding / the pool's) ---
  # AWS's documented pattern: credentials of an instance role used through a
  # VPC endpoint (aws:SourceVpc, aws:VpcSourceIp present) must come from the
  # instance's own VPC and private address. A call an AWS service makes on the
  # job's behalf (aws:ViaAWSService) is exempt. Calls over the internet carry
  # neither key: "endpoints" leaves them alone, "strict" refuses them.
  dynamic "statement" {
    for_each = local.credential_binding[each.key] == "off" ? {} : {
      DenyCredentialsFromAnotherVpc     = { key = "aws:SourceVpc", own = "aws:ec2InstanceSourceVPC" }
      DenyCredentialsFromAnotherAddress = { key = "aws:VpcSourceIp", own = "aws:ec2InstanceSourcePrivateIPv4" }
    }
    content {
      sid       = statement.key
      effect    = "Deny"
      actions   = ["*"]
      resources = ["*"]
      condition {
        test     = "Null"
        variable = "ec2:SourceInstanceARN"
        values   = ["false"]
      }
      condition {
        test     = "Null"
        variable = statement.value.key
        values   = ["false"]
      }
      condition {
        test     = "StringNotEquals"
        variable = statement.value.own
        values   = ["$${${statement.value.key}}"]
      }
      condition {
        test     = "BoolIfExists"
        variable = "aws:ViaAWSService"
        values   = ["false"]
      }
    }
  }

  dynamic "statement" {
    for_each = local.credential_binding[each.key] == "strict" ? [1] : []
    content {
      sid       = "DenyCredentialsOutsideVpcEndpoints"
      effect    = "Deny"
      actions   = ["*"]
      resources = ["*"]
      condition {
        test     = "Null"
        variable = "ec2:SourceInstanceARN"
        values   = ["false"]
      }
      condition {
        test     = "Null"
        variable = "aws:SourceVpc"
        values   = ["true"]
      }
      condition {
        test     = "BoolIfExists"
        variable = "aws:ViaAWSService"
        values   = ["false"]
      }
    }
  }
}

# Guardrails every runner role shares: the control plane.
data "aws_iam_policy_document" "runner_guardrails_plane" {
  statement {
    sid     = "DenyControlPlane"
    effect  = "Deny"
    actions = ["dynamodb:*", "sqs:*", "lambda:*"]
    resources = concat(
      [aws_dynamodb_table.ledger.arn, "${aws_dynamodb_table.ledger.arn}/*"],
      [
        aws_sqs_queue.jobs.arn, aws_sqs_queue.bootstrap.arn, aws_sqs_queue.dlq.arn,
        aws_sqs_queue.bootstrap_dlq.arn, aws_sqs_queue.stop_events.arn, aws_sqs_queue.stop_events_dlq.arn,
      ],
      local.function_arns,
      [for f in local.function_arns : "${f}:*"],
    )
  }

  statement {
    sid       = "DenyOurDocument"
    effect    = "Deny"
    actions   = ["ssm:*"]
    resources = [aws_ssm_document.runner.arn]
  }

  statement {
    sid       = "DenyCommandsToOurInstances"
    effect    = "Deny"
    actions   = ["ssm:SendCommand", "ssm:StartSession"]
    resources = [local.instance_arn]
    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/${local.deployment_tag}"
      values   = [var.prefix]
    }
  }

  statement {
    sid       = "DenyCommandsToOurInstancesByResourceTag"
    effect    = "Deny"
    actions   = ["ssm:SendCommand", "ssm:StartSession"]
    resources = [local.instance_arn]
    condition {
      test     = local.ours.test
      variable = local.ours.variable
      values   = local.ours.values
    }
  }

  statement {
    # Terminate, stop, retag, swap the profile of any runner of this
    # deployment (itself included: it ends with `shutdown -h`).
    sid       = "DenyOurInstances"
    effect    = "Deny"
    actions   = ["ec2:*"]
    resources = [local.instance_arn]
    condition {
      test     = local.ours.test
      variable = local.ours.variable
      values   = local.ours.values
    }
  }

  statement {
    # No launch that looks like ours: from our templates, tagged as ours.
    sid       = "DenyOurLaunchTemplates"
    effect    = "Deny"
    actions   = ["ec2:*"]
    resources = local.launch_template_arns
  }

  statement {
    # Nothing created tagged as ours: instances, volumes, snapshots, interfaces.
    sid = "DenyCreateAsOurs"
    actions = [
      "ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateTags", "ec2:CreateSnapshot", "ec2:CreateSnapshots",
      "ec2:CopySnapshot", "ec2:CreateVolume", "ec2:CreateNetworkInterface", "ec2:CreateSecurityGroup",
    ]
    effect    = "Deny"
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.deployment_tag}"
      values   = [var.prefix]
    }
  }

  statement {
    # Our roles (no PassRole: no VM or function with them; no edits: these
    # guardrails stay), the instance profiles and the guardrail policies.
    sid     = "DenyOurRoles"
    effect  = "Deny"
    actions = ["iam:*"]
    resources = concat(
      local.runner_role_arns,
      local.runner_profile_arns,
      [for r in aws_iam_role.lambda : r.arn],
      [for g, name in local.runner_guardrail_names : "${local.iam_arn}:policy/${name}"],
    )
  }
}

# Guardrails every runner role shares: what runners are made of.
data "aws_iam_policy_document" "runner_guardrails_infra" {
  statement {
    # Another runner's (or its own) root volume, a snapshot of it, its network
    # interface: by the deployment tag the launch templates put on them.
    sid       = "DenyRunnerVolumesSnapshotsAndInterfaces"
    effect    = "Deny"
    actions   = ["ec2:*", "ebs:*"]
    resources = ["${local.ec2_arn}:volume/*", "${local.ec2_arn}:network-interface/*", "arn:${local.partition}:ec2:${local.region}::snapshot/*"]
    condition {
      test     = local.ours.test
      variable = local.ours.variable
      values   = local.ours.values
    }
  }

  statement {
    # The pools' security groups: the module's (tagged) and the ones pools name.
    sid       = "DenyPoolSecurityGroups"
    effect    = "Deny"
    actions   = ["ec2:*"]
    resources = local.security_group_arns
  }

  statement {
    sid       = "DenyOurSecurityGroups"
    effect    = "Deny"
    actions   = ["ec2:*"]
    resources = ["${local.ec2_arn}:security-group/*"]
    condition {
      test     = local.ours.test
      variable = local.ours.variable
      values   = local.ours.values
    }
  }

  dynamic "statement" {
    # A custom resolve:ssm: AMI parameter: readable, never written.
    for_each = length(local.custom_ami_parameter_arns) > 0 ? [1] : []
    content {
      sid         = "DenyAmiParameterWrites"
      effect      = "Deny"
      not_actions = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory", "ssm:DescribeParameters"]
      resources   = local.custom_ami_parameter_arns
    }
  }
}

# Guardrails every runner role shares: what watches and drives the control plane.
data "aws_iam_policy_document" "runner_guardrails_watch" {
  statement {
    # Disable the janitor, drop the stop-runner events.
    sid       = "DenyOurRules"
    effect    = "Deny"
    actions   = ["events:*"]
    resources = local.event_rule_arns
  }

  statement {
    # Stop the queues' pollers.
    sid       = "DenyOurEventSourceMappings"
    effect    = "Deny"
    actions   = ["lambda:*"]
    resources = local.event_source_mapping_arns
  }

  dynamic "statement" {
    for_each = local.use_api_gateway ? [1] : []
    content {
      sid       = "DenyOurWebhookApi"
      effect    = "Deny"
      actions   = ["apigateway:*"]
      resources = [aws_apigatewayv2_api.webhook[0].arn, "${aws_apigatewayv2_api.webhook[0].arn}/*"]
    }
  }

  statement {
    # Logs, metric filters (the log alarms), subscriptions, retention.
    sid       = "DenyOurLogGroups"
    effect    = "Deny"
    actions   = ["logs:*"]
    resources = concat(local.log_group_arns, [for g in local.log_group_arns : "${g}:*"])
  }

  statement {
    sid       = "DenyOurAlarms"
    effect    = "Deny"
    actions   = ["cloudwatch:*"]
    resources = concat(local.alarm_arns, [for d in aws_cloudwatch_dashboard.main : d.dashboard_arn])
  }
}

locals {
  runner_guardrail_policies = {
    plane = data.aws_iam_policy_document.runner_guardrails_plane.json
    infra = data.aws_iam_policy_document.runner_guardrails_infra.json
    watch = data.aws_iam_policy_document.runner_guardrails_watch.json
  }
}

resource "aws_iam_policy" "runner_guardrails" {
  for_each = local.runner_guardrail_policies

  name        = local.runner_guardrail_names[each.key]
  description = "spotrunner ${var.prefix}: guardrails of every runner role (${each.key}); explicit Denies"
  policy      = each.value
  tags        = local.tags

  lifecycle {
    precondition {
      # IAM's limit for a managed policy, whitespace not counted.
      condition     = length(jsonencode(jsondecode(each.value))) <= 6144
      error_message = "The runner guardrail policy ${each.key} exceeds IAM's 6,144 characters (too many pools, alarms or security groups)."
    }
  }
}

resource "aws_iam_role_policy" "runner" {
  for_each = local.pools

  name   = "${var.prefix}-runner-${each.key}"
  role   = aws_iam_role.runner[each.key].id
  policy = data.aws_iam_policy_document.runner[each.key].json
}

resource "aws_iam_role_policy" "runner_guardrails" {
  for_each = local.pools

  name   = "${var.prefix}-runner-${each.key}-guardrails"
  role   = aws_iam_role.runner[each.key].id
  policy = data.aws_iam_policy_document.runner_guardrails[each.key].json

  lifecycle {
    precondition {
      # IAM's limit for all inline policies of a role, whitespace not counted.
      condition = (
        length(jsonencode(jsondecode(data.aws_iam_policy_document.runner[each.key].json))) +
        length(jsonencode(jsondecode(data.aws_iam_policy_document.runner_guardrails[each.key].json)))
      ) <= 10240
      error_message = "The runner role's inline policies exceed IAM's 10,240 characters (too many pools or secret parameters)."
    }
  }
}
