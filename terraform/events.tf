# EventBridge: runner lifecycle events -> the stop-events queue -> stop-runner
# (lambda.tf); schedules -> dlq-mover, janitor and recovery (three tasks).

locals {
  stop_runner_rules = {
    # One SendCommand per instance, so the per-instance invocation event carries
    # the instance id and the terminal status of our document.
    ssm-command = {
      description = "SSM bootstrap command of ${local.ssm_document_name} reached a terminal status"
      pattern = {
        source      = ["aws.ssm"]
        detail-type = ["EC2 Command Invocation Status-change Notification"]
        detail = {
          document-name = [local.ssm_document_name]
          status        = ["Success", "Failed", "TimedOut", "Cancelled"]
        }
      }
    }
    spot-interruption = {
      description = "EC2 spot interruption warning"
      pattern = {
        source      = ["aws.ec2"]
        detail-type = ["EC2 Spot Instance Interruption Warning"]
      }
    }
    instance-state = {
      description = "EC2 instance shutting down or terminated"
      pattern = {
        source      = ["aws.ec2"]
        detail-type = ["EC2 Instance State-change Notification"]
        detail = {
          state = ["shutting-down", "terminated"]
        }
      }
    }
  }

  # key -> the function, its schedule and the event it receives.
  schedules = {
    dlq-mover           = { function = "dlq-mover", expression = var.dlq_mover_schedule, input = null }
    janitor             = { function = "janitor", expression = var.janitor_schedule, input = null }
    recovery-redelivery = { function = "recovery", expression = var.redelivery_schedule, input = jsonencode({ task = "redelivery" }) }
    recovery-sweep      = { function = "recovery", expression = var.sweep_schedule, input = jsonencode({ task = "sweep" }) }
    runner-cache        = { function = "recovery", expression = var.runner_cache_schedule, input = jsonencode({ task = "runner-cache" }) }
  }
}

resource "aws_cloudwatch_event_rule" "stop_runner" {
  for_each = local.stop_runner_rules

  name          = "${var.prefix}-${each.key}"
  description   = "spotrunner ${var.prefix}: ${each.value.description}"
  event_pattern = jsonencode(each.value.pattern)
  tags          = local.tags
}

# The rules deliver to the stop-events queue, not to the function: an
# asynchronous invocation is retried twice and then dropped, a queued event is
# retried until stop-runner succeeds (or it reaches the queue's DLQ). EventBridge
# retries a failed delivery to the queue, then puts the event in that DLQ.
resource "aws_cloudwatch_event_target" "stop_runner" {
  for_each = local.stop_runner_rules

  rule = aws_cloudwatch_event_rule.stop_runner[each.key].name
  arn  = aws_sqs_queue.stop_events.arn

  retry_policy {
    maximum_retry_attempts       = 20
    maximum_event_age_in_seconds = 3600
  }

  dead_letter_config {
    arn = aws_sqs_queue.stop_events_dlq.arn
  }

  depends_on = [aws_sqs_queue_policy.stop_events, aws_sqs_queue_policy.stop_events_dlq]
}

resource "aws_cloudwatch_event_rule" "schedule" {
  for_each = local.schedules

  name                = "${var.prefix}-${each.key}-schedule"
  description         = "spotrunner ${var.prefix}: run ${each.key}"
  schedule_expression = each.value.expression
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "schedule" {
  for_each = local.schedules

  rule  = aws_cloudwatch_event_rule.schedule[each.key].name
  arn   = aws_lambda_function.fn[each.value.function].arn
  input = each.value.input
}

resource "aws_lambda_permission" "schedule" {
  for_each = local.schedules

  statement_id  = "events-${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn[each.value.function].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule[each.key].arn
}
