# EventBridge: runner lifecycle events -> stop-runner; schedules -> dlq-mover and janitor.

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

  schedules = {
    dlq-mover = var.dlq_mover_schedule
    janitor   = var.janitor_schedule
  }
}

resource "aws_cloudwatch_event_rule" "stop_runner" {
  for_each = local.stop_runner_rules

  name          = "${var.prefix}-${each.key}"
  description   = "spotrunner ${var.prefix}: ${each.value.description}"
  event_pattern = jsonencode(each.value.pattern)
  tags          = local.tags
}

resource "aws_cloudwatch_event_target" "stop_runner" {
  for_each = local.stop_runner_rules

  rule = aws_cloudwatch_event_rule.stop_runner[each.key].name
  arn  = aws_lambda_function.fn["stop-runner"].arn

  retry_policy {
    maximum_retry_attempts       = 20
    maximum_event_age_in_seconds = 3600
  }
}

resource "aws_lambda_permission" "stop_runner" {
  for_each = local.stop_runner_rules

  statement_id  = "events-${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn["stop-runner"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.stop_runner[each.key].arn
}

resource "aws_cloudwatch_event_rule" "schedule" {
  for_each = local.schedules

  name                = "${var.prefix}-${each.key}-schedule"
  description         = "spotrunner ${var.prefix}: run ${each.key}"
  schedule_expression = each.value
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "schedule" {
  for_each = local.schedules

  rule = aws_cloudwatch_event_rule.schedule[each.key].name
  arn  = aws_lambda_function.fn[each.key].arn
}

resource "aws_lambda_permission" "schedule" {
  for_each = local.schedules

  statement_id  = "events-schedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn[each.key].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule[each.key].arn
}
