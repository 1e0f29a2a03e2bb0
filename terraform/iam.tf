# One role per Lambda, scoped to what its code calls (the table in README.md
# lists the calls per role) and to this deployment by exact identity:
# - names: this deployment's queues, table, log groups, document, launch
#   templates, runner role, parameters /<prefix>/... (every pattern ends at a
#   '/' or ':' after the prefix, so deployment `sr` never matches `sr-prod`);
# - EC2 instances only with spotrunner:deployment = <prefix> (StringEquals):
#   launch (aws:RequestTag), terminate and tag (aws:ResourceTag), SendCommand
#   (ssm:resourceTag); launches only from this deployment's launch templates;
# - DynamoDB writes by key kind (dynamodb:LeadingKeys) where a role writes one kind;
# - with parameter_kms_key_arn, kms:* only for the parameters a role reads or
#   writes (kms:EncryptionContext:PARAMETER_ARN), only through SSM.
# The effective permissions are checked by scripts/iam/matrix.mjs (an IAM
# policy evaluator) over the roles as deployed; see README.md "IAM".

locals {
  ec2_arn             = "arn:${local.partition}:ec2:${local.region}:${local.account_id}"
  instance_arn_prefix = "${local.ec2_arn}:instance/"
  instance_arn        = "${local.instance_arn_prefix}*"

  launch_template_arns = [for lt in aws_launch_template.pool : lt.arn]

  # Ledger keys (crates/aws/src/dynamodb.rs): job#<id>, runner#<name>,
  # capacity#pool#<pool>, capacity#global, drain#<pool>, health#<pool>, state#<task>.
  # Conditions that limit a ledger call to items whose key (pk) matches the
  # patterns; a call naming no key at all (Scan) never matches.
  ledger_keys = {
    for kind, patterns in {
      jobs = ["job#*"]
      # the webhook's secrets-refresh gate, shared by its containers
      # (crates/aws/src/dynamodb/refresh_gate.rs).
      gates            = ["gate#webhook-secrets"]
      jobs_and_runners = ["job#*", "runner#*"]
      # + the pools' circuit-breaker records (health#<pool>) and waiting
      # lines (state#line/<pool>: a job waits, a release wakes the line).
      jobs_runners_health = ["job#*", "runner#*", "health#*", "state#line/*"]
      # the re-run markers of interrupted jobs' runs (state#rerun/<run id>).
      reruns   = ["state#rerun/*"]
      capacity = ["capacity#*"]
      # recovery: is the job known, is its pool drained, the task's state.
      recovery_reads = ["job#*", "drain#*", "state#*"]
      state          = ["state#*"]
      pool_counters  = ["capacity#pool#*"]
      any            = ["job#*", "runner#*", "capacity#*"]
      } : kind => [
      { test = "ForAllValues:StringLike", variable = "dynamodb:LeadingKeys", values = patterns },
      { test = "Null", variable = "dynamodb:LeadingKeys", values = ["false"] },
    ]
  }

  # The parameters each function reads with decryption (for the KMS context).
  parameter_reads = {
    webhook       = concat([local.config_parameter_arn], local.webhook_secret_arns)
    create-runner = concat([local.config_parameter_arn], local.github_credential_arns)
    stop-runner   = concat([local.config_parameter_arn], local.github_credential_arns)
    dlq-mover     = [local.config_parameter_arn]
    janitor       = concat([local.config_parameter_arn], local.github_credential_arns)
    recovery      = concat([local.config_parameter_arn], local.github_credential_arns)
  }

  kms_via_ssm = { test = "StringEquals", variable = "kms:ViaService", values = ["ssm.${local.region}.amazonaws.com"] }
  our_instance = {
    test     = "StringEquals"
    variable = "aws:ResourceTag/${local.deployment_tag}"
    values   = [var.prefix]
  }
  from_our_templates = {
    test     = "ArnEquals"
    variable = "ec2:LaunchTemplate"
    values   = local.launch_template_arns
  }

  statement_logs_and_config = {
    for fn in keys(local.lambda_settings) : fn => [
      {
        sid        = "OwnLogs"
        actions    = ["logs:CreateLogStream", "logs:PutLogEvents"]
        resources  = ["${aws_cloudwatch_log_group.lambda[fn].arn}:*"]
        conditions = []
      },
      {
        sid        = "ReadConfig"
        actions    = ["ssm:GetParameter"]
        resources  = [local.config_parameter_arn]
        conditions = []
      },
    ]
  }

  statement_kms = {
    for fn in keys(local.lambda_settings) : fn => var.parameter_kms_key_arn == null ? [] : concat(
      [{
        # Decrypt exactly the parameters this function reads.
        sid       = "DecryptOwnParameters"
        actions   = ["kms:Decrypt"]
        resources = [var.parameter_kms_key_arn]
        conditions = [
          { test = "StringEquals", variable = "kms:EncryptionContext:PARAMETER_ARN", values = local.parameter_reads[fn] },
          local.kms_via_ssm,
        ]
      }],
      fn != "create-runner" ? [] : [{
        # Encrypt JIT parameters (PutParameter: Encrypt, or GenerateDataKey for
        # an Advanced-tier value); never decrypt them.
        sid       = "EncryptJitParameters"
        actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
        resources = [var.parameter_kms_key_arn]
        conditions = [
          { test = "StringLike", variable = "kms:EncryptionContext:PARAMETER_ARN", values = [local.jit_parameters_arn] },
          local.kms_via_ssm,
        ]
      }],
    )
  }

  statement_github_credential = [{
    sid        = "ReadGitHubCredential"
    actions    = ["ssm:GetParameter"]
    resources  = local.github_credential_arns
    conditions = []
  }]

  statement_send_jobs = [{
    sid        = "SendJobs"
    actions    = ["sqs:SendMessage"]
    resources  = [aws_sqs_queue.jobs.arn]
    conditions = []
  }]

  statement_terminate = [{
    sid        = "TerminateOurInstances"
    actions    = ["ec2:TerminateInstances"]
    resources  = [local.instance_arn]
    conditions = [local.our_instance]
  }]

  statement_describe_instances = [{
    # DescribeInstances has no resource-level permissions; the code filters by the deployment tag.
    sid        = "DescribeInstances"
    actions    = ["ec2:DescribeInstances"]
    resources  = ["*"]
    conditions = []
  }]

  statement_delete_jit = [{
    sid        = "DeleteJitParameters"
    actions    = ["ssm:DeleteParameter"]
    resources  = [local.jit_parameters_arn]
    conditions = []
  }]

  # Ledger reads (GetItem; Scan where the code lists items) and writes by key
  # kind. TransactWriteItems (reserve, release) is authorised per item action:
  # Put runner#, Update capacity#pool#, Update capacity#global.
  statement_ledger = {
    read_scan = {
      sid        = "ReadLedger"
      actions    = ["dynamodb:GetItem", "dynamodb:Scan"]
      resources  = [aws_dynamodb_table.ledger.arn]
      conditions = []
    }
    put_jobs_runners = {
      sid        = "WriteJobsRunnersAndPoolHealth"
      actions    = ["dynamodb:PutItem"]
      resources  = [aws_dynamodb_table.ledger.arn]
      conditions = local.ledger_keys.jobs_runners_health
    }
    update_capacity = {
      sid        = "CountCapacity"
      actions    = ["dynamodb:UpdateItem"]
      resources  = [aws_dynamodb_table.ledger.arn]
      conditions = local.ledger_keys.capacity
    }
    # stop-runner and the janitor re-run interrupted jobs (crates/core/src/rerun.rs).
    put_reruns = {
      sid        = "WriteRerunMarkers"
      actions    = ["dynamodb:PutItem"]
      resources  = [aws_dynamodb_table.ledger.arn]
      conditions = local.ledger_keys.reruns
    }
  }

  lambda_statements = {
    webhook = concat(
      [
        {
          sid        = "ReadWebhookSecrets"
          actions    = ["ssm:GetParameter"]
          resources  = local.webhook_secret_arns
          conditions = []
        },
        {
          # Cold start: the document and its secrets in one GetParameters call
          # (SPOTRUNNER_WEBHOOK_SECRET_PARAMETERS).
          sid        = "ReadConfigAndSecretsAtOnce"
          actions    = ["ssm:GetParameters"]
          resources  = concat([local.config_parameter_arn], local.webhook_secret_arns)
          conditions = []
        },
        {
          # in_progress / completed: read and write job#<id> items only.
          sid        = "RecordJobStates"
          actions    = ["dynamodb:GetItem", "dynamodb:PutItem"]
          resources  = [aws_dynamodb_table.ledger.arn]
          conditions = local.ledger_keys.jobs
        },
        {
          # A signature matching no secret: one secrets read per interval
          # across every container (a conditional put of gate#webhook-secrets).
          sid        = "SecretsRefreshGate"
          actions    = ["dynamodb:GetItem", "dynamodb:PutItem"]
          resources  = [aws_dynamodb_table.ledger.arn]
          conditions = local.ledger_keys.gates
        },
      ],
      local.statement_send_jobs,
    )

    create-runner = concat(
      local.statement_github_credential,
      [
        {
          # The event source mappings receive, delete and read attributes with
          # this role; the code sends (jobs: retries, bootstrap: delayed steps)
          # and sets the visibility of retried messages.
          sid = "JobsAndBootstrapQueues"
          actions = [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ChangeMessageVisibility",
            "sqs:SendMessage",
          ]
          resources  = [aws_sqs_queue.jobs.arn, aws_sqs_queue.bootstrap.arn]
          conditions = []
        },
        merge(local.statement_ledger.read_scan, { actions = ["dynamodb:GetItem"] }),
        local.statement_ledger.put_jobs_runners,
        local.statement_ledger.update_capacity,
        {
          # put (SecureString), exists (GetParameter without decryption), delete.
          sid        = "WriteJitParameters"
          actions    = ["ssm:PutParameter", "ssm:GetParameter", "ssm:DeleteParameter"]
          resources  = [local.jit_parameters_arn]
          conditions = []
        },
        {
          # Tags at PutParameter and spotrunner:instance-arn after the launch.
          sid        = "TagJitParameters"
          actions    = ["ssm:AddTagsToResource"]
          resources  = [local.jit_parameters_arn]
          conditions = [{ test = "ForAllValues:StringLike", variable = "aws:TagKeys", values = ["spotrunner:*"] }]
        },
        {
          # A retried bootstrap step looks for the command an earlier step sent
          # (ListCommands has no resource-level permissions).
          sid        = "FindSentBootstrapCommands"
          actions    = ["ssm:ListCommands"]
          resources  = ["*"]
          conditions = []
        },
        {
          sid        = "SendBootstrapDocument"
          actions    = ["ssm:SendCommand"]
          resources  = [aws_ssm_document.runner.arn]
          conditions = []
        },
        {
          sid        = "SendBootstrapToOurInstances"
          actions    = ["ssm:SendCommand"]
          resources  = [local.instance_arn]
          conditions = [{ test = "StringEquals", variable = "ssm:resourceTag/${local.deployment_tag}", values = [var.prefix] }]
        },
        # --- launch: CreateFleet (instant) from our launch templates only ---
        # CreateFleet is authorised on the fleet, the instance (tags of the
        # request), the launch template and the overrides (subnets); what the
        # launch template supplies is authorised as RunInstances, where
        # ec2:LaunchTemplate names the template of the request.
        {
          sid        = "CreateFleetFromOurTemplates"
          actions    = ["ec2:CreateFleet"]
          resources  = concat(["${local.ec2_arn}:fleet/*", "${local.ec2_arn}:subnet/*", "${local.ec2_arn}:volume/*"], local.launch_template_arns)
          conditions = []
        },
        {
          sid       = "CreateFleetTaggedInstances"
          actions   = ["ec2:CreateFleet"]
          resources = [local.instance_arn]
          conditions = [
            { test = "StringEquals", variable = "aws:RequestTag/${local.deployment_tag}", values = [var.prefix] },
          ]
        },
        {
          sid       = "RunTaggedInstancesFromOurTemplates"
          actions   = ["ec2:RunInstances"]
          resources = [local.instance_arn]
          conditions = [
            { test = "StringEquals", variable = "aws:RequestTag/${local.deployment_tag}", values = [var.prefix] },
            local.from_our_templates,
          ]
        },
        {
          # The AMI only as the launch template names it (an id or resolve:ssm:).
          sid       = "RunTemplateImages"
          actions   = ["ec2:RunInstances"]
          resources = ["arn:${local.partition}:ec2:${local.region}::image/*", "${local.ec2_arn}:image/*"]
          conditions = [
            local.from_our_templates,
            { test = "Bool", variable = "ec2:IsLaunchTemplateResource", values = ["true"] },
          ]
        },
        {
          sid     = "RunTemplateResources"
          actions = ["ec2:RunInstances"]
          resources = concat([
            "${local.ec2_arn}:subnet/*",
            "${local.ec2_arn}:security-group/*",
            "${local.ec2_arn}:network-interface/*",
            "${local.ec2_arn}:volume/*",
            "${local.ec2_arn}:key-pair/*",
          ], local.launch_template_arns)
          conditions = [local.from_our_templates]
        },
        {
          # A spot request carries no ec2:LaunchTemplate key; it launches
          # nothing without the instance statement above.
          sid        = "RunSpotRequests"
          actions    = ["ec2:RunInstances"]
          resources  = ["${local.ec2_arn}:spot-instances-request/*"]
          conditions = []
        },
        {
          # Tags in the launch request (instance) and the template (volume, ENI).
          sid       = "TagOnLaunchOnly"
          actions   = ["ec2:CreateTags"]
          resources = [local.instance_arn, "${local.ec2_arn}:volume/*", "${local.ec2_arn}:network-interface/*"]
          conditions = [
            { test = "StringEquals", variable = "ec2:CreateAction", values = ["CreateFleet", "RunInstances"] },
            { test = "StringEquals", variable = "aws:RequestTag/${local.deployment_tag}", values = [var.prefix] },
          ]
        },
        {
          # Each pool's runner role (runner.tf), to EC2 only.
          sid        = "PassRunnerRoles"
          actions    = ["iam:PassRole"]
          resources  = [for r in aws_iam_role.runner : r.arn]
          conditions = [{ test = "StringEquals", variable = "iam:PassedToService", values = ["ec2.amazonaws.com"] }]
        },
        {
          # EC2 resolves resolve:ssm:/aws/service/... AMIs with the caller's permissions.
          sid        = "ResolvePublicAmiParameters"
          actions    = ["ssm:GetParameters"]
          resources  = ["arn:${local.partition}:ssm:${local.region}::parameter/aws/service/*"]
          conditions = []
        },
        {
          # The first spot launch in an account creates EC2's spot service-linked role.
          sid        = "SpotServiceLinkedRole"
          actions    = ["iam:CreateServiceLinkedRole"]
          resources  = ["arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"]
          conditions = [{ test = "StringEquals", variable = "iam:AWSServiceName", values = ["spot.amazonaws.com"] }]
        },
      ],
      local.statement_terminate,          # boot timeout
      local.statement_describe_instances, # a ClientToken mismatch: find the launch by its tags
    )

    stop-runner = concat(
      local.statement_github_credential,
      local.statement_send_jobs, # puts back the job of an interrupted runner
      [
        {
          # The event source mapping receives, deletes and reads attributes
          # with this role; the code makes no SQS call on this queue.
          sid = "StopEventsQueue"
          actions = [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
          ]
          resources  = [aws_sqs_queue.stop_events.arn]
          conditions = []
        },
      ],
      [
        local.statement_ledger.read_scan, # Scan: the runner of a forgotten instance
        local.statement_ledger.put_jobs_runners,
        local.statement_ledger.update_capacity, # release
        local.statement_ledger.put_reruns,
      ],
      local.statement_delete_jit,
      local.statement_terminate,
      local.statement_describe_instances,
    )

    dlq-mover = concat(
      [
        {
          sid = "DrainDlqs"
          actions = [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage", # DeleteMessageBatch
            "sqs:GetQueueAttributes",
          ]
          resources  = [aws_sqs_queue.dlq.arn, aws_sqs_queue.bootstrap_dlq.arn, aws_sqs_queue.stop_events_dlq.arn]
          conditions = []
        },
        {
          # Each DLQ's messages go back to the queue they came from.
          sid        = "MoveBackBootstrapAndStopEvents"
          actions    = ["sqs:SendMessage"]
          resources  = [aws_sqs_queue.bootstrap.arn, aws_sqs_queue.stop_events.arn]
          conditions = []
        },
        {
          # Is the job finished (job#<id>)? Is the runner of a bootstrap step
          # still waiting for it (runner#<name>)?
          sid        = "ReadJobsAndRunners"
          actions    = ["dynamodb:GetItem"]
          resources  = [aws_dynamodb_table.ledger.arn]
          conditions = local.ledger_keys.jobs_and_runners
        },
      ],
      local.statement_send_jobs,
    )

    janitor = concat(
      local.statement_github_credential,
      local.statement_send_jobs, # requeue
      [
        local.statement_ledger.read_scan,
        local.statement_ledger.put_jobs_runners,
        # release, and the capacity repair: a conditional UpdateItem per counter.
        local.statement_ledger.update_capacity,
        local.statement_ledger.put_reruns,
      ],
      local.statement_delete_jit,
      [
        {
          # Leaked JIT parameters. DescribeParameters has no resource-level
          # permissions (the call filters by name prefix; it returns no values).
          sid        = "ListJitParameters"
          actions    = ["ssm:DescribeParameters"]
          resources  = ["*"]
          conditions = []
        },
        {
          # Mark instances tainted: only the spotrunner:tainted key, only ours.
          sid       = "TaintOurInstances"
          actions   = ["ec2:CreateTags"]
          resources = [local.instance_arn]
          conditions = [
            local.our_instance,
            { test = "ForAllValues:StringEquals", variable = "aws:TagKeys", values = ["spotrunner:tainted"] },
          ]
        },
      ],
      local.statement_terminate,
      local.statement_describe_instances,
    )

    recovery = concat(
      local.statement_github_credential,
      local.statement_send_jobs, # the sweep enqueues jobs that were never delivered
      [
        {
          sid        = "ReadJobsDrainAndTaskState"
          actions    = ["dynamodb:GetItem"]
          resources  = [aws_dynamodb_table.ledger.arn]
          conditions = local.ledger_keys.recovery_reads
        },
        {
          # The redelivery checkpoint, the sweep's place, the runner release (state#<task>).
          sid        = "WriteTaskState"
          actions    = ["dynamodb:PutItem"]
          resources  = [aws_dynamodb_table.ledger.arn]
          conditions = local.ledger_keys.state
        },
        {
          # The runner-cache task: read a checksum sidecar, store a verified
          # tarball and then its sidecar (the runner role may only create).
          sid        = "FillRunnerCacheVerified"
          actions    = ["s3:GetObject", "s3:PutObject"]
          resources  = ["${local.bucket_arn}/runner-cache/*"]
          conditions = []
        },
        {
          # Without it a missing key answers 403 instead of 404 (HeadObject, GetObject).
          sid        = "RunnerCacheMissingIs404"
          actions    = ["s3:ListBucket"]
          resources  = [local.bucket_arn]
          conditions = []
        },
      ],
    )
  }
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

data "aws_iam_policy_document" "lambda" {
  for_each = local.lambda_settings

  dynamic "statement" {
    for_each = concat(local.statement_logs_and_config[each.key], local.lambda_statements[each.key], local.statement_kms[each.key])
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources
      dynamic "condition" {
        for_each = statement.value.conditions
        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }
}

resource "aws_iam_role_policy" "lambda" {
  for_each = local.lambda_settings

  name   = "${var.prefix}-${each.key}"
  role   = aws_iam_role.lambda[each.key].id
  policy = data.aws_iam_policy_document.lambda[each.key].json

  lifecycle {
    precondition {
      # IAM's limit for a role's inline policies, whitespace not counted.
      condition     = length(jsonencode(jsondecode(data.aws_iam_policy_document.lambda[each.key].json))) <= 10240
      error_message = "The ${each.key} role's policy exceeds IAM's 10,240 characters (too many pools)."
    }
  }
}
