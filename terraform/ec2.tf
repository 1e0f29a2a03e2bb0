# Per pool: one launch template. All pools share the runner instance role.

resource "aws_launch_template" "pool" {
  for_each = local.pools

  name        = "${var.prefix}-${each.key}"
  description = "spotrunner ${var.prefix}: runners of pool ${each.key}"
  # An AMI id, or resolve:ssm:<public parameter> resolved by EC2 at launch;
  # by default Amazon Linux 2023 of the pool's architecture (arch.tf).
  image_id = local.pool_ami[each.key]

  instance_initiated_shutdown_behavior = "terminate"
  update_default_version               = true
  ebs_optimized                        = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.runner.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }

  monitoring {
    enabled = false
  }

  block_device_mappings {
    device_name = each.value.root_device_name
    ebs {
      volume_size           = each.value.root_volume_size_gb
      volume_type           = each.value.root_volume_type
      encrypted             = true
      delete_on_termination = true
    }
  }

  dynamic "network_interfaces" {
    for_each = length(each.value.security_group_ids) > 0 ? [1] : []
    content {
      associate_public_ip_address = false
      delete_on_termination       = true
      security_groups             = each.value.security_group_ids
    }
  }

  # Instance tags come with the CreateFleet request (deployment, pool, job,
  # runner); volumes and network interfaces get theirs here.
  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { "spotrunner:pool" = each.key })
  }

  tag_specifications {
    resource_type = "network-interface"
    tags          = merge(local.tags, { "spotrunner:pool" = each.key })
  }

  tags = merge(local.tags, { "spotrunner:pool" = each.key })
}

# --- runner instance role ----------------------------------------------------

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
  name               = "${var.prefix}-runner"
  description        = "spotrunner ${var.prefix}: runner instances (SSM agent, own JIT parameter, bucket reads)"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = local.tags
}

# What the job may add. These cannot re-open what the guardrails below deny:
# an explicit Deny wins over every Allow.
resource "aws_iam_role_policy_attachment" "runner_extra" {
  for_each = toset(var.runner_extra_policy_arns)

  role       = aws_iam_role.runner.name
  policy_arn = each.value
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
}

data "aws_iam_policy_document" "runner" {
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

  statement {
    sid     = "ReadRunnerBucket"
    actions = ["s3:GetObject"]
    resources = [
      "${local.bucket_arn}/${local.bootstrap_script_key}",
      "${local.bucket_arn}/startup/*",
      "${local.bucket_arn}/runner-cache/*",
    ]
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

# Guardrails: explicit Denies that no Allow on this role can undo (neither a
# managed policy re-attached nor runner_extra_policy_arns, AdministratorAccess
# included). They cover this deployment's secrets and control plane; they do
# not restrict what extra policies grant on anything else.
data "aws_iam_policy_document" "runner_guardrails" {
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

  # --- the control plane ---
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
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.deployment_tag}"
      values   = [var.prefix]
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
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.deployment_tag}"
      values   = [var.prefix]
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
    sid       = "DenyLaunchAsOurs"
    effect    = "Deny"
    actions   = ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateTags"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.deployment_tag}"
      values   = [var.prefix]
    }
  }

  statement {
    # Our roles (no PassRole: no VM or function with them; no edits: these
    # guardrails stay) and the instance profile.
    sid     = "DenyOurRoles"
    effect  = "Deny"
    actions = ["iam:*"]
    resources = concat(
      [aws_iam_role.runner.arn, "arn:${local.partition}:iam::${local.account_id}:instance-profile/${var.prefix}-runner"],
      [for r in aws_iam_role.lambda : r.arn],
    )
  }
}

resource "aws_iam_role_policy" "runner" {
  name   = "${var.prefix}-runner"
  role   = aws_iam_role.runner.id
  policy = data.aws_iam_policy_document.runner.json
}

resource "aws_iam_role_policy" "runner_guardrails" {
  name   = "${var.prefix}-runner-guardrails"
  role   = aws_iam_role.runner.id
  policy = data.aws_iam_policy_document.runner_guardrails.json

  lifecycle {
    precondition {
      # IAM's limit for all inline policies of a role, whitespace not counted.
      condition = (
        length(jsonencode(jsondecode(data.aws_iam_policy_document.runner.json))) +
        length(jsonencode(jsondecode(data.aws_iam_policy_document.runner_guardrails.json)))
      ) <= 10240
      error_message = "The runner role's inline policies exceed IAM's 10,240 characters (too many pools or secret parameters)."
    }
  }
}

resource "aws_iam_instance_profile" "runner" {
  name = "${var.prefix}-runner"
  role = aws_iam_role.runner.name
  tags = local.tags
}
