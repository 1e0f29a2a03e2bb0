# A CloudWatch dashboard over the Lambdas' EMF metrics (namespace `spotrunner`,
# dimensions deployment = var.prefix, function, and per metric pool / reason /
# capacity / stage; README.md "Metrics and dashboard" lists them) and the DLQs.
# Series whose dimension values are open-ended (stages, reasons, capacities)
# are SEARCH expressions; per-pool series are listed from var.pools.

locals {
  dashboard_period = 300
  # SEARCH over one metric of this deployment, any dimension set.
  dashboard_search = { for m in ["stage_ms", "jobs_launched", "jobs_failed_to_start", "jobs_dropped", "runners_ended", "webhook_accepted", "webhook_ignored", "webhook_refused", "jobs_waiting"] :
    m => "Namespace=\"spotrunner\" MetricName=\"${m}\" deployment=\"${var.prefix}\""
  }
  dashboard_pools = [for p in var.pools : p.name]

  dashboard_widgets = concat(
    # Row 1: where the time goes, stage by stage (create-runner's stage_ms).
    [for i, stat in ["p50", "p95", "p99"] : {
      type   = "metric"
      x      = i * 8
      y      = 0
      width  = 8
      height = 6
      properties = {
        title   = "Queue time by stage, ${stat} (stage_ms, ms)"
        region  = local.region
        view    = "timeSeries"
        stacked = false
        period  = local.dashboard_period
        metrics = [[{ id = "stage_${stat}", expression = "SEARCH('${local.dashboard_search["stage_ms"]}', '${stat}', ${local.dashboard_period})", label = "" }]]
      }
    }],
    [
      # Row 2: queue time (GitHub created_at -> launch requested) per pool.
      {
        type   = "metric"
        x      = 0
        y      = 6
        width  = 12
        height = 6
        properties = {
          title  = "Queue time p50 / p95 / p99 per pool (queue_time_ms, ms)"
          region = local.region
          view   = "timeSeries"
          period = local.dashboard_period
          metrics = flatten([for p in local.dashboard_pools : [for stat in ["p50", "p95", "p99"] :
            [["spotrunner", "queue_time_ms", "deployment", var.prefix, "function", "create-runner", "pool", p, { stat = stat, label = "${p} ${stat}" }]]
          ]])
          annotations = { horizontal = [{ label = "alarm (p95)", value = var.queue_time_alarm_p95_ms }] }
        }
      },
      {
        type   = "metric"
        x      = 12
        y      = 6
        width  = 12
        height = 6
        properties = {
          title  = "Launches by capacity (jobs_launched) and jobs waiting for capacity"
          region = local.region
          view   = "timeSeries"
          period = local.dashboard_period
          metrics = [
            [{ id = "launched", expression = "SEARCH('${local.dashboard_search["jobs_launched"]}', 'Sum', ${local.dashboard_period})", label = "" }],
            [{ id = "waiting", expression = "SEARCH('${local.dashboard_search["jobs_waiting"]}', 'Sum', ${local.dashboard_period})", label = "" }],
          ]
        }
      },
      # Row 3: failures.
      {
        type   = "metric"
        x      = 0
        y      = 12
        width  = 8
        height = 6
        properties = {
          title  = "Failures: jobs failed to start, jobs dropped (by reason)"
          region = local.region
          view   = "timeSeries"
          period = local.dashboard_period
          metrics = [
            [{ id = "failed", expression = "SEARCH('${local.dashboard_search["jobs_failed_to_start"]}', 'Sum', ${local.dashboard_period})", label = "" }],
            [{ id = "dropped", expression = "SEARCH('${local.dashboard_search["jobs_dropped"]}', 'Sum', ${local.dashboard_period})", label = "" }],
          ]
        }
      },
      {
        type   = "metric"
        x      = 8
        y      = 12
        width  = 8
        height = 6
        properties = {
          title  = "Runners ended by reason (runners_ended)"
          region = local.region
          view   = "timeSeries"
          period = local.dashboard_period
          metrics = [
            [{ id = "ended", expression = "SEARCH('${local.dashboard_search["runners_ended"]}', 'Sum', ${local.dashboard_period})", label = "" }],
          ]
        }
      },
      {
        type   = "metric"
        x      = 16
        y      = 12
        width  = 8
        height = 6
        properties = {
          title  = "DLQ depths"
          region = local.region
          view   = "timeSeries"
          period = local.dashboard_period
          stat   = "Maximum"
          metrics = [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.dlq.name, { label = "jobs DLQ" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.bootstrap_dlq.name, { label = "bootstrap DLQ" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.stop_events_dlq.name, { label = "stop-events DLQ" }],
          ]
        }
      },
      # Row 4: capacity (the janitor's gauges) and the webhook.
      {
        type   = "metric"
        x      = 0
        y      = 18
        width  = 12
        height = 6
        properties = {
          title  = "Capacity used vs max per pool (janitor: capacity_used, capacity_max)"
          region = local.region
          view   = "timeSeries"
          period = local.dashboard_period
          stat   = "Maximum"
          metrics = flatten([for p in local.dashboard_pools : [
            ["spotrunner", "capacity_used", "deployment", var.prefix, "function", "janitor", "pool", p, { label = "${p} used" }],
            ["spotrunner", "capacity_max", "deployment", var.prefix, "function", "janitor", "pool", p, { label = "${p} max" }],
          ]])
        }
      },
      {
        type   = "metric"
        x      = 12
        y      = 18
        width  = 12
        height = 6
        properties = {
          title  = "Webhook deliveries: accepted (by pool), ignored and refused (by reason)"
          region = local.region
          view   = "timeSeries"
          period = local.dashboard_period
          metrics = [
            [{ id = "accepted", expression = "SEARCH('${local.dashboard_search["webhook_accepted"]}', 'Sum', ${local.dashboard_period})", label = "" }],
            [{ id = "ignored", expression = "SEARCH('${local.dashboard_search["webhook_ignored"]}', 'Sum', ${local.dashboard_period})", label = "" }],
            [{ id = "refused", expression = "SEARCH('${local.dashboard_search["webhook_refused"]}', 'Sum', ${local.dashboard_period})", label = "" }],
          ]
        }
      },
    ],
  )
}

resource "aws_cloudwatch_dashboard" "main" {
  count = var.create_dashboard ? 1 : 0

  dashboard_name = "${var.prefix}-spotrunner"
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}
