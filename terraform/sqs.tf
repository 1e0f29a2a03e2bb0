# Jobs queue (webhook -> create-runner), bootstrap queue (create-runner's delayed
# bootstrap steps) and the dead-letter queue both redrive into.

locals {
  max_receive_count = 3
  # create-runner's timeout; the queues' visibility timeout is 6x it (AWS's advice
  # for SQS event sources), so a message is never handed out twice at once.
  create_runner_timeout    = 120
  queue_visibility_timeout = 6 * local.create_runner_timeout
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.prefix}-jobs-dlq"
  message_retention_seconds = 1209600 # 14 days: longer than GitHub keeps a job queued
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

resource "aws_sqs_queue" "bootstrap" {
  name                       = "${var.prefix}-bootstrap"
  visibility_timeout_seconds = local.queue_visibility_timeout
  message_retention_seconds  = 86400
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = local.max_receive_count
  })
  tags = local.tags
}
