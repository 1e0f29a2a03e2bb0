output "webhook_url" {
  description = "The URL to give GitHub as the webhook's Payload URL (content type application/json)."
  value       = local.webhook_url
}

locals {
  webhook_url = local.use_api_gateway ? "${aws_apigatewayv2_stage.webhook[0].invoke_url}webhook" : (
    local.use_function_url ? aws_lambda_function_url.webhook[0].function_url : null
  )
}

output "config_parameter" {
  description = "Name of the SSM parameter holding the configuration document (SPOTRUNNER_CONFIG_PARAMETER of every Lambda)."
  value       = aws_ssm_parameter.config.name
}

output "config_json" {
  description = "The rendered configuration document (JSON) the Lambdas load. Holds secret references (ssm:/...), not secret values."
  value       = local.config_json
}

output "lambda_environment" {
  description = "Environment variables of each Lambda, by function (webhook, create-runner, stop-runner, dlq-mover, janitor)."
  value       = { for k, v in local.lambda_settings : k => merge(local.common_env, v.env) }
}

output "function_names" {
  description = "Lambda function names by function."
  value       = { for k, f in aws_lambda_function.fn : k => f.function_name }
}

output "role_arns" {
  description = "IAM role ARNs by Lambda, plus `runner-<pool>` for each pool's runner role."
  value       = merge({ for k, r in aws_iam_role.lambda : k => r.arn }, { for p, r in aws_iam_role.runner : "runner-${p}" => r.arn })
}

output "jobs_queue_url" {
  description = "URL of the jobs queue."
  value       = aws_sqs_queue.jobs.url
}

output "bootstrap_queue_url" {
  description = "URL of the bootstrap queue."
  value       = aws_sqs_queue.bootstrap.url
}

output "dlq_url" {
  description = "URL of the jobs queue's dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

output "bootstrap_dlq_url" {
  description = "URL of the bootstrap queue's dead-letter queue."
  value       = aws_sqs_queue.bootstrap_dlq.url
}

output "stop_events_queue_url" {
  description = "URL of the stop-events queue (EventBridge -> stop-runner)."
  value       = aws_sqs_queue.stop_events.url
}

output "stop_events_dlq_url" {
  description = "URL of the stop-events queue's dead-letter queue."
  value       = aws_sqs_queue.stop_events_dlq.url
}

output "event_source_mappings" {
  description = "SQS event source mappings by queue (jobs, bootstrap -> create-runner; stop-events -> stop-runner): queue ARN, function ARN, batch size, response types."
  value = merge(
    { for k, m in aws_lambda_event_source_mapping.create_runner : k => {
      queue_arn               = m.event_source_arn
      function_arn            = m.function_arn
      batch_size              = m.batch_size
      function_response_types = m.function_response_types
    } },
    { stop-events = {
      queue_arn               = aws_lambda_event_source_mapping.stop_runner.event_source_arn
      function_arn            = aws_lambda_event_source_mapping.stop_runner.function_arn
      batch_size              = aws_lambda_event_source_mapping.stop_runner.batch_size
      function_response_types = aws_lambda_event_source_mapping.stop_runner.function_response_types
    } },
  )
}

output "ledger_table" {
  description = "Name of the DynamoDB ledger table."
  value       = aws_dynamodb_table.ledger.name
}

output "bucket" {
  description = "Name of the runner bucket (bootstrap.sh, startup/, runner-cache/)."
  value       = aws_s3_bucket.runner.id
}

output "bootstrap_script_key" {
  description = "Key of bootstrap.sh in the bucket."
  value       = aws_s3_object.bootstrap.key
}

output "ssm_document" {
  description = "Name of the SSM command document create-runner sends."
  value       = aws_ssm_document.runner.name
}

output "jit_parameter_prefix" {
  description = "Prefix of the JIT config parameters (/<prefix>/jit/<runner>)."
  value       = local.jit_prefix
}

output "webhook_secret_parameters" {
  description = "SSM parameter names of the webhook secret(s), current first."
  value       = compact([local.webhook_secret_name, local.webhook_previous_secret_name])
}

output "github_credential_parameter" {
  description = "SSM parameter name of the GitHub App private key or PAT."
  value       = local.github_credential_name
}

output "launch_templates" {
  description = "Launch template name and id by pool."
  value       = { for k, lt in aws_launch_template.pool : k => { name = lt.name, id = lt.id } }
}

output "runner_instance_profile" {
  description = "Name of each pool's runner instance profile, by pool."
  value       = { for p, ip in aws_iam_instance_profile.runner : p => ip.name }
}

output "runner_roles" {
  description = "By pool: its runner role (name, ARN), instance profile, security groups, startup script key (null without one), extra policies and credential binding."
  value = { for p, pool in local.pools : p => {
    role_name          = aws_iam_role.runner[p].name
    role_arn           = aws_iam_role.runner[p].arn
    instance_profile   = aws_iam_instance_profile.runner[p].name
    security_group_ids = local.pool_security_group_ids[p]
    startup_script_key = pool.startup_script == null ? null : local.startup_script_key[p]
    extra_policy_arns  = distinct(concat(var.runner_extra_policy_arns, pool.extra_policy_arns))
    credential_binding = local.credential_binding[p]
  } }
}

output "runner_guardrail_policies" {
  description = "ARNs of the managed guardrail policies every runner role has (plane, infra, watch)."
  value       = { for g, p in aws_iam_policy.runner_guardrails : g => p.arn }
}

output "event_rules" {
  description = "EventBridge rule names: stop-runner triggers (to the stop-events queue) and schedules."
  value = merge(
    { for k, r in aws_cloudwatch_event_rule.stop_runner : k => r.name },
    { for k, r in aws_cloudwatch_event_rule.schedule : "${k}-schedule" => r.name },
  )
}

output "github_app_id_parameter" {
  description = "The SSM parameter the Lambdas read the GitHub App's id from (github_app_id_parameter), or null when the id is given as a number."
  value       = local.github_app_id_name
}

output "cli_environment" {
  description = "Shell exports that point the spotrunner CLI at this deployment (doctor, status, redrive, … with --backend aws): eval \"$(terraform output -raw cli_environment)\"."
  value = join("\n", [for k, v in {
    AWS_REGION                     = local.region
    SPOTRUNNER_CONFIG_PARAMETER    = local.config_parameter
    SPOTRUNNER_WEBHOOK_URL         = local.webhook_url
    SPOTRUNNER_JOBS_QUEUE_URL      = aws_sqs_queue.jobs.url
    SPOTRUNNER_BOOTSTRAP_QUEUE_URL = aws_sqs_queue.bootstrap.url
    SPOTRUNNER_DLQ_URL             = aws_sqs_queue.dlq.url
    SPOTRUNNER_LEDGER_TABLE        = aws_dynamodb_table.ledger.name
    SPOTRUNNER_SSM_DOCUMENT        = aws_ssm_document.runner.name
    SPOTRUNNER_BUCKET              = aws_s3_bucket.runner.id
  } : "export ${k}='${v}'" if v != null])
}
