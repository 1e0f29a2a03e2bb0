# The webhook endpoint: an HTTP API with POST /webhook (default) or a Function URL.

locals {
  use_api_gateway  = var.webhook_endpoint == "api_gateway"
  use_function_url = var.webhook_endpoint == "function_url"
}

resource "aws_apigatewayv2_api" "webhook" {
  count = local.use_api_gateway ? 1 : 0

  name          = "${var.prefix}-webhook"
  description   = "spotrunner ${var.prefix}: GitHub workflow_job webhooks"
  protocol_type = "HTTP"
  tags          = local.tags
}

resource "aws_apigatewayv2_integration" "webhook" {
  count = local.use_api_gateway ? 1 : 0

  api_id                 = aws_apigatewayv2_api.webhook[0].id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.fn["webhook"].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 10000
}

resource "aws_apigatewayv2_route" "webhook" {
  #checkov:skip=CKV_AWS_309:GitHub cannot present IAM, JWT or Lambda-authorizer credentials; every request is authenticated in the function by its X-Hub-Signature-256 HMAC (constant-time compare) and rejected with 401 otherwise.
  count = local.use_api_gateway ? 1 : 0

  api_id             = aws_apigatewayv2_api.webhook[0].id
  route_key          = "POST /webhook"
  target             = "integrations/${aws_apigatewayv2_integration.webhook[0].id}"
  authorization_type = "NONE"
}

resource "aws_cloudwatch_log_group" "api" {
  #checkov:skip=CKV_AWS_158:Access logs hold request metadata only (no bodies, no secrets); CloudWatch Logs' default encryption suffices.
  #checkov:skip=CKV_AWS_338:Retention is a variable (log_retention_days, default 30 days): operational logs, not an audit trail.
  count = local.use_api_gateway ? 1 : 0

  name              = "/aws/apigateway/${var.prefix}-webhook"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

resource "aws_apigatewayv2_stage" "webhook" {
  count = local.use_api_gateway ? 1 : 0

  api_id      = aws_apigatewayv2_api.webhook[0].id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.api_throttling.rate_limit
    throttling_burst_limit = var.api_throttling.burst_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api[0].arn
    format = jsonencode({
      requestId      = "$context.requestId"
      ip             = "$context.identity.sourceIp"
      requestTime    = "$context.requestTime"
      routeKey       = "$context.routeKey"
      status         = "$context.status"
      latency        = "$context.integrationLatency"
      responseLength = "$context.responseLength"
      error          = "$context.integrationErrorMessage"
    })
  }

  tags = local.tags
}

resource "aws_lambda_permission" "api" {
  count = local.use_api_gateway ? 1 : 0

  statement_id  = "apigateway-webhook"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn["webhook"].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.webhook[0].execution_arn}/*/POST/webhook"
}

resource "aws_lambda_function_url" "webhook" {
  #checkov:skip=CKV_AWS_258:GitHub cannot sign requests with SigV4; every request is authenticated in the function by its X-Hub-Signature-256 HMAC (constant-time compare) and rejected with 401 otherwise.
  count = local.use_function_url ? 1 : 0

  function_name      = aws_lambda_function.fn["webhook"].function_name
  authorization_type = "NONE"
}

resource "aws_lambda_permission" "function_url" {
  #checkov:skip=CKV_AWS_301:A public Function URL is the point of webhook_endpoint = "function_url" (GitHub must reach it); the permission is limited to InvokeFunctionUrl with auth type NONE, and the function authenticates every request by its X-Hub-Signature-256 HMAC.
  count = local.use_function_url ? 1 : 0

  statement_id           = "function-url-public"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.fn["webhook"].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}
