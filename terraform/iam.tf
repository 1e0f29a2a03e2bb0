# One role per Lambda, least privilege, scoped to this deployment:
# - names under the prefix (queues, table, parameters /<prefix>/..., document);
# - EC2 instances only when tagged spotrunner:deployment = <prefix>: launch
#   (aws:RequestTag), terminate and tag (aws:ResourceTag), SendCommand
#   (ssm:resourceTag);
# - iam:PassRole only for the runner instance role, only to EC2.
# The actions are the ones the code calls (crates/aws/src, crates/aws-ec2/src).

locals {
  ec2_arn      = "arn:${local.partition}:ec2:${local.region}:${local.account_id}"
  instance_arn = "${local.ec2_arn}:instance/*"

  # The functions that read GitHub credentials (dlq-mover does not call GitHub).
  github_readers = ["create-runner", "stop-runner", "janitor"]

  kms_statements = var.parameter_kms_key_arn == null ? {} : { for k in keys(local.lambda_settings) : k => true }
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  for_each = local.lambda_settings

  name               = "${var.prefix}-${each.key}"
  description        = "spotrunner ${var.prefix}: ${each.key} Lambda"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

# ---------------------------------------------------------------------------
# Statements shared by several roles, built once.
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "lambda" {
  for_each = local.lambda_settings

  # Every function: its own log group, the configuration document.
  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda[each.key].arn}:*"]
  }

  statement {
    sid       = "ReadConfig"
    actions   = ["ssm:GetParameter"]
    resources = [local.config_parameter_arn]
  }

  # webhook: the webhook secret(s).
  dynamic "statement" {
    for_each = each.key == "webhook" ? [1] : []
    content {
      sid       = "ReadWebhookSecrets"
      actions   = ["ssm:GetParameter"]
      resources = local.webhook_secret_arns
    }
  }

  # GitHub credential (App key or PAT).
  dynamic "statement" {
    for_each = contains(local.github_readers, each.key) ? [1] : []
    content {
      sid       = "ReadGitHubCredential"
      actions   = ["ssm:GetParameter"]
      resources = local.github_credential_arns
    }
  }

  # --- SQS ---
  dynamic "statement" {
    for_each = contains(["webhook", "stop-runner", "dlq-mover", "janitor"], each.key) ? [1] : []
    content {
      sid       = "SendJobs"
      actions   = ["sqs:SendMessage"]
      resources = [aws_sqs_queue.jobs.arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "create-runner" ? [1] : []
    content {
      sid = "ConsumeAndRequeue"
      actions = [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
      ]
      resources = [aws_sqs_queue.jobs.arn, aws_sqs_queue.bootstrap.arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "dlq-mover" ? [1] : []
    content {
      sid = "DrainDlq"
      actions = [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage", # DeleteMessageBatch
        "sqs:GetQueueAttributes",
      ]
      resources = [aws_sqs_queue.dlq.arn]
    }
  }

  # --- DynamoDB ledger (TransactWriteItems is authorised per item action: Put, Update) ---
  dynamic "statement" {
    for_each = each.key == "webhook" ? [1] : []
    content {
      sid       = "RecordJobStates"
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]
      resources = [aws_dynamodb_table.ledger.arn]
    }
  }

  dynamic "statement" {
    for_each = each.key != "webhook" ? [1] : []
    content {
      sid = "Ledger"
      actions = concat(
        [
          "dynamodb:GetItem",
          "dynamodb:PutItem",
          "dynamodb:UpdateItem",
          "dynamodb:Scan",
        ],
        # Only the janitor repairs capacity counters (deletes stale ones).
        each.key == "janitor" ? ["dynamodb:DeleteItem"] : [],
      )
      resources = [aws_dynamodb_table.ledger.arn]
    }
  }

  # --- SSM: JIT parameters /<prefix>/jit/* ---
  dynamic "statement" {
    for_each = each.key == "create-runner" ? [1] : []
    content {
      sid = "WriteJitParameters"
      actions = [
        "ssm:PutParameter",
        "ssm:AddTagsToResource",
        "ssm:GetParameter",
        "ssm:DeleteParameter",
      ]
      resources = [local.jit_parameters_arn]
    }
  }

  dynamic "statement" {
    for_each = contains(["stop-runner", "janitor"], each.key) ? [1] : []
    content {
      sid       = "CleanJitParameters"
      actions   = ["ssm:GetParameter", "ssm:DeleteParameter"]
      resources = [local.jit_parameters_arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "janitor" ? [1] : []
    content {
      # Leaked JIT parameters. DescribeParameters has no resource-level
      # permissions (the call filters by name prefix).
      sid       = "ListJitParameters"
      actions   = ["ssm:DescribeParameters"]
      resources = ["*"]
    }
  }

  # --- SSM RunCommand: our document, only on our instances ---
  dynamic "statement" {
    for_each = each.key == "create-runner" ? [1] : []
    content {
      sid       = "SendBootstrapDocument"
      actions   = ["ssm:SendCommand"]
      resources = [aws_ssm_document.runner.arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "create-runner" ? [1] : []
    content {
      sid       = "SendBootstrapToOurInstances"
      actions   = ["ssm:SendCommand"]
      resources = [local.instance_arn]
      condition {
        test     = "StringEquals"
        variable = "ssm:resourceTag/${local.deployment_tag}"
        values   = [var.prefix]
      }
    }
  }

  # --- EC2: launch (create-runner) ---
  dynamic "statement" {
    for_each = each.key == "create-runner" ? [1] : []
    content {
      sid       = "LaunchTaggedInstances"
      actions   = ["ec2:CreateFleet", "ec2:RunInstances"]
      resources = [local.instance_arn]
      condition {
        test     = "StringEquals"
        variable = "aws:RequestTag/${local.deployment_tag}"
        values   = [var.prefix]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "create-runner" ? [1] : []
    content {
      sid       = "LaunchFromOurTemplates"
      actions   = ["ec2:CreateFleet", "ec2:RunInstances"]
      resources = [for lt in aws_launch_template.pool : lt.arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "create-runner" ? [1] : []
    content {
      # The other resources a fleet launch touches; they cannot carry request
      # tags (volumes and ENIs are tagged by the launch template).
      sid     = "LaunchSupportingResources"
      actions = ["ec2:CreateFleet", "ec2:RunInstances"]
      resources = [
        "${local.ec2_arn}:fleet/*",
        "${local.ec2_arn}:volume/*",
        "${local.ec2_arn}:network-interface/*",
        "${local.ec2_arn}:subnet/*",
        "${local.ec2_arn}:security-group/*",
        "${local.ec2_arn}:spot-instances-request/*",
        "${local.ec2_arn}:key-pair/*",
        "arn:${local.partition}:ec2:${local.region}::image/*",
        "${local.ec2_arn}:image/*",
      ]
    }
  }

  dynamic "statement" {
    for_each = each.key == "create-runner" ? [1] : []
    content {
      sid     = "TagOnLaunchOnly"
      actions = ["ec2:CreateTags"]
      resources = [
        local.instance_arn,
        "${local.ec2_arn}:fleet/*",
        "${local.ec2_arn}:volume/*",
        "${local.ec2_arn}:network-interface/*",
        "${local.ec2_arn}:spot-instances-request/*",
      ]
      condition {
        test     = "StringEquals"
        variable = "ec2:CreateAction"
        values   = ["CreateFleet", "RunInstances"]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "create-runner" ? [1] : []
    content {
      sid       = "PassRunnerRole"
      actions   = ["iam:PassRole"]
      resources = [aws_iam_role.runner.arn]
      condition {
        test     = "StringEquals"
        variable = "iam:PassedToService"
        values   = ["ec2.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "create-runner" ? [1] : []
    content {
      # Launch templates may name their AMI as resolve:ssm:/aws/service/...
      sid       = "ResolvePublicAmiParameters"
      actions   = ["ssm:GetParameters"]
      resources = ["arn:${local.partition}:ssm:${local.region}::parameter/aws/service/*"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "create-runner" ? [1] : []
    content {
      # The first spot launch in an account creates EC2's spot service-linked role.
      sid       = "SpotServiceLinkedRole"
      actions   = ["iam:CreateServiceLinkedRole"]
      resources = ["arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"]
      condition {
        test     = "StringEquals"
        variable = "iam:AWSServiceName"
        values   = ["spot.amazonaws.com"]
      }
    }
  }

  # --- EC2: terminate and mark (only this deployment's instances) ---
  dynamic "statement" {
    for_each = contains(["create-runner", "stop-runner", "janitor"], each.key) ? [1] : []
    content {
      sid       = "TerminateOurInstances"
      actions   = ["ec2:TerminateInstances"]
      resources = [local.instance_arn]
      condition {
        test     = "StringEquals"
        variable = "aws:ResourceTag/${local.deployment_tag}"
        values   = [var.prefix]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "janitor" ? [1] : []
    content {
      # Mark instances tainted; only the spotrunner:tainted key, only ours.
      sid       = "TaintOurInstances"
      actions   = ["ec2:CreateTags"]
      resources = [local.instance_arn]
      condition {
        test     = "StringEquals"
        variable = "aws:ResourceTag/${local.deployment_tag}"
        values   = [var.prefix]
      }
      condition {
        test     = "ForAllValues:StringEquals"
        variable = "aws:TagKeys"
        values   = ["spotrunner:tainted"]
      }
    }
  }

  dynamic "statement" {
    for_each = contains(["stop-runner", "janitor"], each.key) ? [1] : []
    content {
      # DescribeInstances has no resource-level permissions; the code filters by the deployment tag.
      sid       = "DescribeInstances"
      actions   = ["ec2:DescribeInstances"]
      resources = ["*"]
    }
  }

  # --- KMS (only with parameter_kms_key_arn) ---
  dynamic "statement" {
    for_each = lookup(local.kms_statements, each.key, false) ? [1] : []
    content {
      sid       = "ParameterKey"
      actions   = each.key == "create-runner" ? ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"]
      resources = [var.parameter_kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "lambda" {
  for_each = local.lambda_settings

  name   = "${var.prefix}-${each.key}"
  role   = aws_iam_role.lambda[each.key].id
  policy = data.aws_iam_policy_document.lambda[each.key].json
}
