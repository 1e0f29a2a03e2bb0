# The six Lambdas: one role, one log group and one zip each.

locals {
  common_env = {
    SPOTRUNNER_CONFIG_PARAMETER = local.config_parameter
    # A changed document changes every function's configuration, so Lambda
    # starts new containers at once (warm ones also reload it after
    # SPOTRUNNER_CONFIG_TTL_SECS, default 300).
    SPOTRUNNER_CONFIG_SHA256 = sha256(local.config_json)
    RUST_LOG                 = var.log_level
  }

  # key: the binary name (= directory under lambda_zip_dir).
  lambda_settings = {
    webhook = {
      description = "verify GitHub webhooks, enqueue matching workflow jobs"
      memory      = 256
      timeout     = 10
      reserved    = var.reserved_concurrency.webhook
      env = {
        SPOTRUNNER_JOBS_QUEUE_URL = aws_sqs_queue.jobs.url
        SPOTRUNNER_LEDGER_TABLE   = aws_dynamodb_table.ledger.name
        # The secrets the document references (ssm:<name>), read with it in
        # one GetParameters call at cold start.
        SPOTRUNNER_WEBHOOK_SECRET_PARAMETERS = join(",", compact([local.webhook_secret_name, local.webhook_previous_secret_name]))
      }
    }
    create-runner = {
      description = "claim jobs, reserve capacity, register JIT runners, launch spot VMs, bootstrap them"
      memory      = 512
      timeout     = local.create_runner_timeout
      reserved    = var.reserved_concurrency.create_runner
      env = merge(
        {
          SPOTRUNNER_JOBS_QUEUE_URL       = aws_sqs_queue.jobs.url
          SPOTRUNNER_BOOTSTRAP_QUEUE_URL  = aws_sqs_queue.bootstrap.url
          SPOTRUNNER_LEDGER_TABLE         = aws_dynamodb_table.ledger.name
          SPOTRUNNER_SSM_DOCUMENT         = aws_ssm_document.runner.name
          SPOTRUNNER_BUCKET               = aws_s3_bucket.runner.id
          SPOTRUNNER_BOOTSTRAP_SCRIPT_KEY = local.bootstrap_script_key
          # JIT parameters are tagged spotrunner:instance-arn = this + the
          # instance id: what the runner role's ec2:SourceInstanceARN matches.
          SPOTRUNNER_INSTANCE_ARN_PREFIX = local.instance_arn_prefix
        },
        # JIT parameters under the same key as the module's SecureStrings.
        var.parameter_kms_key_arn == null ? {} : { SPOTRUNNER_PARAMETER_KMS_KEY = var.parameter_kms_key_arn },
      )
    }
    stop-runner = {
      description = "clean up after a runner: terminate, delete its JIT parameter, deregister, release capacity"
      memory      = 256
      timeout     = local.stop_runner_timeout
      reserved    = var.reserved_concurrency.stop_runner
      env = {
        SPOTRUNNER_LEDGER_TABLE   = aws_dynamodb_table.ledger.name
        SPOTRUNNER_SSM_DOCUMENT   = aws_ssm_document.runner.name
        SPOTRUNNER_JOBS_QUEUE_URL = aws_sqs_queue.jobs.url
      }
    }
    dlq-mover = {
      description = "move dead-lettered jobs, bootstrap steps and stop events back to their queues at a bounded rate"
      memory      = 256
      timeout     = local.dlq_mover_timeout
      reserved    = var.reserved_concurrency.dlq_mover
      env = merge(
        {
          SPOTRUNNER_DLQ_URL               = aws_sqs_queue.dlq.url
          SPOTRUNNER_JOBS_QUEUE_URL        = aws_sqs_queue.jobs.url
          SPOTRUNNER_LEDGER_TABLE          = aws_dynamodb_table.ledger.name
          SPOTRUNNER_BOOTSTRAP_DLQ_URL     = aws_sqs_queue.bootstrap_dlq.url
          SPOTRUNNER_BOOTSTRAP_QUEUE_URL   = aws_sqs_queue.bootstrap.url
          SPOTRUNNER_STOP_EVENTS_DLQ_URL   = aws_sqs_queue.stop_events_dlq.url
          SPOTRUNNER_STOP_EVENTS_QUEUE_URL = aws_sqs_queue.stop_events.url
        },
        var.dlq_max_per_run == null ? {} : { SPOTRUNNER_DLQ_MAX_PER_RUN = tostring(var.dlq_max_per_run) },
        var.dlq_rate_per_second == null ? {} : { SPOTRUNNER_DLQ_RATE_PER_SECOND = tostring(var.dlq_rate_per_second) },
      )
    }
    janitor = {
      description = "reconcile EC2, ledger and GitHub runners; clean up leaks"
      memory      = 512
      timeout     = 300
      reserved    = var.reserved_concurrency.janitor
      env = merge(
        {
          SPOTRUNNER_LEDGER_TABLE   = aws_dynamodb_table.ledger.name
          SPOTRUNNER_JOBS_QUEUE_URL = aws_sqs_queue.jobs.url
        },
        var.janitor_dry_run ? { SPOTRUNNER_DRY_RUN = "true" } : {},
      )
    }
    recovery = {
      description = "redeliver failed webhook deliveries; sweep for queued jobs that never reached the webhook; fill the runner cache with verified runner tarballs"
      # The runner-cache task holds one runner tarball (~200 MB) in memory
      # while it hashes and stores it; 5 minutes for two downloads and uploads.
      memory   = 1024
      timeout  = 300
      reserved = var.reserved_concurrency.recovery
      env = {
        SPOTRUNNER_LEDGER_TABLE   = aws_dynamodb_table.ledger.name
        SPOTRUNNER_JOBS_QUEUE_URL = aws_sqs_queue.jobs.url
        SPOTRUNNER_BUCKET         = aws_s3_bucket.runner.id
      }
    }
  }

  # dlq-mover paces itself at rate/s up to max per run (function defaults 50 and
  # 1000): its timeout covers that plus a minute of calls, within Lambda's 900 s.
  dlq_mover_timeout = min(900, max(120, ceil(coalesce(var.dlq_max_per_run, 1000) / coalesce(var.dlq_rate_per_second, 50)) + 60))

  lambda_zips = { for name, _ in local.lambda_settings : name => "${var.lambda_zip_dir}/${name}/bootstrap.zip" }
}

# The default log group of each function (/aws/lambda/<function name>), created
# here so that it has a retention and is removed with the function.
resource "aws_cloudwatch_log_group" "lambda" {
  #checkov:skip=CKV_AWS_158:Logs are encrypted by CloudWatch Logs by default; the Lambdas never log secrets (values are redacted in code), so a customer-managed KMS key is not required.
  #checkov:skip=CKV_AWS_338:Retention is a variable (log_retention_days, default 30 days): operational logs, not an audit trail; a year's retention is the operator's choice.
  for_each = local.lambda_settings

  name              = "/aws/lambda/${var.prefix}-${each.key}"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

resource "aws_lambda_function" "fn" {
  #checkov:skip=CKV_AWS_50:X-Ray tracing is off: the functions emit JSON logs with job/runner/instance ids and CloudWatch EMF metrics; tracing would add cost and an xray permission to every role.
  #checkov:skip=CKV_AWS_116:No async-invocation DLQ: the SQS-driven functions (create-runner, stop-runner) have the DLQs of their queues; the scheduled ones (janitor, dlq-mover) are level-triggered (the next run re-finds anything a failed run missed); the webhook is synchronous.
  #checkov:skip=CKV_AWS_117:Not in a VPC: the functions call GitHub and AWS APIs only; a VPC would need a NAT gateway (cost) and gives no isolation benefit here.
  #checkov:skip=CKV_AWS_173:Environment variables hold only resource names and URLs, no secrets (secrets are SSM SecureString references); the AWS-managed key encrypts them at rest.
  #checkov:skip=CKV_AWS_272:Code signing is not used: zips are built from this repository by scripts/package-lambdas.sh and pinned by filebase64sha256.
  for_each = local.lambda_settings

  function_name    = "${var.prefix}-${each.key}"
  description      = "spotrunner ${var.prefix}: ${each.value.description}"
  role             = aws_iam_role.lambda[each.key].arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  filename         = local.lambda_zips[each.key]
  source_code_hash = filebase64sha256(local.lambda_zips[each.key])
  memory_size      = each.value.memory
  timeout          = each.value.timeout

  reserved_concurrent_executions = var.enable_reserved_concurrency ? each.value.reserved : -1

  environment {
    variables = merge(local.common_env, each.value.env)
  }

  tags = local.tags

  depends_on = [
    aws_cloudwatch_log_group.lambda,
    aws_iam_role_policy.lambda,
  ]
}

# --- SQS event sources: jobs + bootstrap queues -> create-runner -------------

resource "aws_lambda_event_source_mapping" "create_runner" {
  for_each = {
    jobs      = aws_sqs_queue.jobs.arn
    bootstrap = aws_sqs_queue.bootstrap.arn
  }

  event_source_arn                   = each.value
  function_name                      = aws_lambda_function.fn["create-runner"].arn
  batch_size                         = var.create_runner_batch_size
  maximum_batching_window_in_seconds = 0
  function_response_types            = ["ReportBatchItemFailures"]
  enabled                            = true

  # With reserved concurrency, cap the pollers below it: a throttled invocation
  # would return its messages to the queue and burn one of their 3 receives.
  dynamic "scaling_config" {
    for_each = local.create_runner_esm_concurrency == null ? [] : [1]
    content {
      maximum_concurrency = local.create_runner_esm_concurrency
    }
  }
}

locals {
  # Each of the two mappings gets half of create-runner's reserved concurrency (at least 2, SQS's minimum).
  create_runner_esm_concurrency = (
    var.enable_reserved_concurrency && var.reserved_concurrency.create_runner >= 4
    ? floor(var.reserved_concurrency.create_runner / 2) : null
  )
}

# --- SQS event source: stop-events queue -> stop-runner ----------------------

resource "aws_lambda_event_source_mapping" "stop_runner" {
  event_source_arn                   = aws_sqs_queue.stop_events.arn
  function_name                      = aws_lambda_function.fn["stop-runner"].arn
  batch_size                         = local.stop_runner_batch_size
  maximum_batching_window_in_seconds = 0
  function_response_types            = ["ReportBatchItemFailures"]
  enabled                            = true

  # With reserved concurrency, the pollers stay below it (a throttled
  # invocation would burn a receive of each of its messages).
  dynamic "scaling_config" {
    for_each = local.stop_runner_esm_concurrency == null ? [] : [1]
    content {
      maximum_concurrency = local.stop_runner_esm_concurrency
    }
  }
}

locals {
  # stop-runner handles a batch's events one after another, each a few API calls:
  # 5 fit its timeout with room for slow answers.
  stop_runner_batch_size = 5
  stop_runner_esm_concurrency = (
    var.enable_reserved_concurrency && var.reserved_concurrency.stop_runner >= 2
    ? var.reserved_concurrency.stop_runner : null
  )
}
