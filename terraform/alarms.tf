# CloudWatch alarms: dead-lettered jobs, bootstrap steps and stop events, Lambda
# errors, jobs waiting too long (queue age; queue time p95 per pool), and log
# lines that need a person.

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${var.prefix}-dlq-not-empty"
  alarm_description   = "spotrunner ${var.prefix}: jobs reached the dead-letter queue (dlq-mover retries them; look at create-runner's logs)"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

# The bootstrap queue's and the stop-events queue's DLQs.
resource "aws_cloudwatch_metric_alarm" "other_dlq_not_empty" {
  for_each = {
    bootstrap = {
      queue       = aws_sqs_queue.bootstrap_dlq.name
      description = "bootstrap steps reached their dead-letter queue (dlq-mover puts them back on the bootstrap queue; look at create-runner's logs)"
    }
    stop-events = {
      queue       = aws_sqs_queue.stop_events_dlq.name
      description = "runner events whose teardown failed ${local.stop_events_max_receive_count} times, or that EventBridge could not deliver, reached their dead-letter queue (dlq-mover puts them back; the janitor cleans up meanwhile; look at stop-runner's logs)"
    }
  }

  alarm_name          = "${var.prefix}-${each.key}-dlq-not-empty"
  alarm_description   = "spotrunner ${var.prefix}: ${each.value.description}"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value.queue }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each = local.lambda_settings

  alarm_name          = "${var.prefix}-${each.key}-errors"
  alarm_description   = "spotrunner ${var.prefix}: ${each.key} Lambda reported errors"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.fn[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "oldest_job" {
  alarm_name          = "${var.prefix}-oldest-job-age"
  alarm_description   = "spotrunner ${var.prefix}: a job has waited in the jobs queue longer than ${var.oldest_job_age_alarm_secs} s"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.jobs.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = var.oldest_job_age_alarm_secs
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

# Queue time per pool: the p95 of create-runner's queue_time_ms (EMF, GitHub's
# created_at to the launch request) above var.queue_time_alarm_p95_ms.
resource "aws_cloudwatch_metric_alarm" "queue_time" {
  for_each = var.queue_time_alarm_p95_ms == null ? toset([]) : toset([for p in var.pools : p.name])

  alarm_name          = "${var.prefix}-${each.key}-queue-time-p95"
  alarm_description   = "spotrunner ${var.prefix}: pool ${each.key}'s jobs waited more than ${var.queue_time_alarm_p95_ms} ms (p95) from GitHub queueing them to their launch (capacity full, spot shortage, a paused pool; see the dashboard's queue time by stage)"
  namespace           = "spotrunner"
  metric_name         = "queue_time_ms"
  dimensions          = { deployment = var.prefix, function = "create-runner", pool = each.key }
  extended_statistic  = "p95"
  period              = 300
  evaluation_periods  = var.queue_time_alarm_evaluation_periods
  threshold           = var.queue_time_alarm_p95_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

# Log lines that carry `metric = "<name>"` (JSON logs, flattened: `$.metric`)
# and need a person: a pool paused by its circuit breaker, jobs given up after
# their runners kept ending before they started, a CreateFleet retry whose
# launch could not be found.
locals {
  log_alarms = {
    pool-circuit-opened = {
      metric      = "pool_circuit_opened"
      functions   = ["create-runner", "stop-runner", "janitor"]
      description = "a pool was paused: its runners keep ending before their job starts (broken runner, AMI or startup script); `spotrunner status` shows the last reason"
    }
    jobs-failed-to-start = {
      metric      = "jobs_failed_to_start"
      functions   = ["create-runner", "stop-runner", "janitor"]
      description = "jobs were given up after relaunch.max_launches runners ended before the job started"
    }
    webhook-redelivery-gave-up = {
      metric      = "webhook_redelivery_gave_up"
      functions   = ["recovery"]
      description = "a workflow_job delivery still failed after recovery.redelivery.max_requests redeliveries (or GitHub forgot it); the sweep may still find its job; look at the webhook's and recovery's logs"
    }
    runner-cache-refused = {
      metric      = "runner_cache_refused"
      functions   = ["recovery"]
      description = "a runner tarball's SHA-256 did not match the one GitHub published (or none was published): it was not cached; the VMs keep the version in use; look at recovery's logs (version, arch, expected, got)"
    }
    launch-token-mismatch = {
      metric      = "launch_token_mismatch"
      functions   = ["create-runner"]
      description = "a CreateFleet retry answered IdempotentParameterMismatch and the first launch was not found by its tags (retried; look at create-runner's logs)"
    }
  }
  log_alarm_filters = merge([
    for name, a in local.log_alarms : {
      for fn in a.functions : "${name}-${fn}" => { metric = a.metric, fn = fn }
    }
  ]...)
}

resource "aws_cloudwatch_log_metric_filter" "log_alarm" {
  for_each = local.log_alarm_filters

  name           = "${var.prefix}-${each.key}"
  log_group_name = aws_cloudwatch_log_group.lambda[each.value.fn].name
  pattern        = "{ $.metric = \"${each.value.metric}\" }"

  metric_transformation {
    name      = each.value.metric
    namespace = "spotrunner/${var.prefix}"
    value     = "1"
  }
}

resource "aws_cloudwatch_metric_alarm" "log_alarm" {
  for_each = local.log_alarms

  alarm_name          = "${var.prefix}-${each.key}"
  alarm_description   = "spotrunner ${var.prefix}: ${each.value.description}"
  namespace           = "spotrunner/${var.prefix}"
  metric_name         = each.value.metric
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

# The runner cache task's EMF metric: days since a newer runner release than
# the one in use came out (0 when current). GitHub expects runner updates
# within 30 days of a release and refuses runners older than its minimum.
resource "aws_cloudwatch_metric_alarm" "runner_version_behind" {
  alarm_name          = "${var.prefix}-runner-version-behind"
  alarm_description   = "spotrunner ${var.prefix}: the runner version in use is behind a release published more than ${local.runner_max_age_days} days ago (set runner_version to the newer one or to \"latest\"; `spotrunner status` shows both)"
  namespace           = "spotrunner"
  metric_name         = "runner_version_behind_days"
  dimensions          = { deployment = var.prefix, function = "recovery" }
  statistic           = "Maximum"
  period              = 86400
  evaluation_periods  = 1
  threshold           = local.runner_max_age_days
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

locals {
  # The configuration's recovery.runner_cache.max_age_days (its default: 30).
  runner_max_age_days = try(var.recovery.runner_cache.max_age_days, 30)
}

# Security: a burst of webhook requests refused for a bad signature (401).
# The webhook publishes every refused request as the EMF metric
# webhook_refused with the dimension reason (crates/core/src/webhook/route.rs;
# crates/aws/src/metrics.rs): bad_signature is a signature no secret held
# matches.
resource "aws_cloudwatch_metric_alarm" "webhook_bad_signatures" {
  alarm_name          = "${var.prefix}-webhook-bad-signatures"
  alarm_description   = "spotrunner ${var.prefix}: more than ${var.webhook_bad_signature_alarm_threshold} webhook requests in 5 minutes carried a bad signature (401): someone is guessing the secret or flooding the endpoint, or GitHub and the deployment hold different secrets (after a rotation: webhook_previous_secret_parameter)"
  namespace           = "spotrunner"
  metric_name         = "webhook_refused"
  dimensions          = { deployment = var.prefix, function = "webhook", reason = "bad_signature" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.webhook_bad_signature_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}
