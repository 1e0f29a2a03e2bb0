# Jobs queue (webhook -> create-runner) and its DLQ; bootstrap queue
# (create-runner's delayed bootstrap steps) and its own DLQ; stop-events queue
# (EventBridge -> stop-runner) and its own DLQ. dlq-mover moves each DLQ's
# messages back to the queue they came from.

locals {
  max_receive_count = 3
  # create-runner's timeout; the queues' visibility timeout is 6x it (AWS's advice
  # for SQS event sources), so a message is never handed out twice at once.
  create_runner_timeout    = 120
  queue_visibility_timeout = 6 * local.create_runner_timeout

  # stop-runner: a failed teardown comes back after the visibility timeout (6x
  # the function's timeout) and is tried again, up to 12 receives (about 72
  # minutes) before it lands in its DLQ.
  stop_runner_timeout           = 60
  stop_events_visibility        = 6 * local.stop_runner_timeout
  stop_events_max_receive_count = 12

  dlq_retention_seconds = 1209600 # 14 days: longer than any source queue keeps a message
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.prefix}-jobs-dlq"
  message_retention_seconds = local.dlq_retention_seconds # longer than GitHub keeps a job queued
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}

resource "aws_sqs_queue" "jobs" {
  name                       = "${var.prefix}-jobs"
  visibility_timeout_seconds = local.queue_visibility_timeout
  message_retention_seconds  = 86400 # GitHub drops jobs queued for 24 h
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = local.max_receive_count
  })
  tags = local.tags
}

# The bootstrap queue's own DLQ: its messages are BootstrapMessages, not jobs;
# dlq-mover puts them back on the bootstrap queue.
resource "aws_sqs_queue" "bootstrap_dlq" {
  name                      = "${var.prefix}-bootstrap-dlq"
  message_retention_seconds = local.dlq_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}

resource "aws_sqs_queue" "bootstrap" {
  name                       = "${var.prefix}-bootstrap"
  visibility_timeout_seconds = local.queue_visibility_timeout
  message_retention_seconds  = 86400
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.bootstrap_dlq.arn
    maxReceiveCount     = local.max_receive_count
  })
  tags = local.tags
}

# EventBridge's runner events for stop-runner, and their DLQ (events whose
# teardown failed stop_events_max_receive_count times, and events EventBridge
# could not deliver to the queue).
resource "aws_sqs_queue" "stop_events_dlq" {
  name                      = "${var.prefix}-stop-events-dlq"
  message_retention_seconds = local.dlq_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}

resource "aws_sqs_queue" "stop_events" {
  name                       = "${var.prefix}-stop-events"
  visibility_timeout_seconds = local.stop_events_visibility
  message_retention_seconds  = 345600 # 4 days
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.stop_events_dlq.arn
    maxReceiveCount     = local.stop_events_max_receive_count
  })
  tags = local.tags
}

# Only this deployment's stop-runner rules may send to the stop-events queue
# and (undeliverable events) its DLQ.
data "aws_iam_policy_document" "stop_events_queue" {
  for_each = {
    queue = aws_sqs_queue.stop_events.arn
    dlq   = aws_sqs_queue.stop_events_dlq.arn
  }

  statement {
    sid       = "StopRunnerRules"
    actions   = ["sqs:SendMessage"]
    resources = [each.value]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [for r in aws_cloudwatch_event_rule.stop_runner : r.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "stop_events" {
  queue_url = aws_sqs_queue.stop_events.id
  policy    = data.aws_iam_policy_document.stop_events_queue["queue"].json
}

resource "aws_sqs_queue_policy" "stop_events_dlq" {
  queue_url = aws_sqs_queue.stop_events_dlq.id
  policy    = data.aws_iam_policy_document.stop_events_queue["dlq"].json
}
