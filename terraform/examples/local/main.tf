# spotrunner against a local AWS emulator (moto_server on 127.0.0.1): every
# provider endpoint points at it, credentials are fake. Used by
# scripts/terraform-check.sh (apply, outputs, destroy); never for real AWS.

terraform {
  required_version = ">= 1.9.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 7.0"
    }
  }
}

variable "moto_port" {
  description = "Port of moto_server on 127.0.0.1."
  type        = number
  default     = 5000

  validation {
    condition     = var.moto_port >= 1 && var.moto_port <= 65535
    error_message = "moto_port must be a TCP port."
  }
}

variable "region" {
  description = "Region the emulator pretends to be."
  type        = string
  default     = "us-east-1"
}

variable "prefix" {
  description = "Deployment prefix."
  type        = string
  default     = "srlocal"
}

variable "lambda_zip_dir" {
  description = "Directory with <function>/bootstrap.zip (scripts/package-lambdas.sh output, or the placeholders scripts/terraform-check.sh --placeholder-zips writes)."
  type        = string
  default     = null
}

variable "webhook_endpoint" {
  description = "api_gateway (default) or function_url."
  type        = string
  default     = "api_gateway"
}

variable "github_api_url" {
  description = "GitHub API base the rendered configuration names (a fake GitHub server in tests)."
  type        = string
  default     = "http://127.0.0.1:9/api/v3"
}

variable "github_pat" {
  description = "Fake GitHub token stored in SSM."
  type        = string
  default     = "local-fake-token"
  sensitive   = true
}

variable "webhook_secret" {
  description = "Webhook secret stored in SSM (tests sign their deliveries with it); at least 32 characters."
  type        = string
  default     = "local-webhook-secret-0123456789abcdef"
  sensitive   = true
}

locals {
  endpoint = "http://127.0.0.1:${var.moto_port}"
}

provider "aws" {
  region     = var.region
  access_key = "testing"
  secret_key = "testing"

  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  skip_requesting_account_id  = false
  s3_use_path_style           = true

  endpoints {
    apigatewayv2   = local.endpoint
    cloudwatch     = local.endpoint
    cloudwatchlogs = local.endpoint
    dynamodb       = local.endpoint
    ec2            = local.endpoint
    events         = local.endpoint
    iam            = local.endpoint
    kms            = local.endpoint
    lambda         = local.endpoint
    s3             = local.endpoint
    sqs            = local.endpoint
    ssm            = local.endpoint
    sts            = local.endpoint
  }
}

# moto creates a default VPC with one subnet per availability zone.
data "aws_vpc" "default" {
  default = true
}

data "aws_subnets" "default" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default.id]
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

# A customer-managed key for the SecureStrings, so that the IAM matrix
# (scripts/iam/matrix.mjs) exercises the KMS encryption-context conditions.
resource "aws_kms_key" "parameters" {
  description             = "spotrunner ${var.prefix}: SSM SecureString parameters (local emulator)"
  enable_key_rotation     = true
  deletion_window_in_days = 7
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      # The default key policy: IAM policies of the account decide.
      Sid       = "AccountIamPolicies"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

module "spotrunner" {
  source = "../.."

  prefix         = var.prefix
  lambda_zip_dir = coalesce(var.lambda_zip_dir, "${path.module}/../../../target/lambda")

  webhook_endpoint = var.webhook_endpoint
  github_api_url   = var.github_api_url
  github_auth_type = "pat"
  github_pat       = var.github_pat
  webhook_secret   = var.webhook_secret

  parameter_kms_key_arn = aws_kms_key.parameters.arn

  # Explicit: any owner (an empty list is refused on AWS).
  allowed_owners   = ["*"]
  max_total_weight = 10

  pools = [
    {
      name               = "cpu"
      labels             = ["linux", "x64"]
      ami                = "ami-12c6146b" # one of moto's built-in AMIs
      instance_types     = ["t3.micro", "t3.small"]
      subnets            = slice(sort(data.aws_subnets.default.ids), 0, 2)
      capacity_type      = "spot"
      on_demand_fallback = true
      max_runners        = 5
      boot_timeout_secs  = 120
      idle_timeout_secs  = 300
      max_run_time_secs  = 3600
      startup_script     = "echo local startup"
      # Credentials usable only through VPC endpoints, from the instance
      # (the IAM matrix checks both bindings: this pool strict, the others
      # the default "endpoints").
      credential_binding = "strict"
    },
    {
      name   = "ondemand"
      labels = ["linux", "x64", "on-demand"]
      # A custom resolve:ssm: AMI parameter (stored as is by moto): the
      # runner roles may read it, never write it (the IAM matrix checks).
      ami               = "resolve:ssm:/team-images/runner-x64"
      instance_types    = ["t3.micro"]
      subnets           = slice(sort(data.aws_subnets.default.ids), 0, 1)
      capacity_type     = "on-demand"
      max_runners       = 2
      weight            = 2
      max_run_time_secs = 3600
    },
    {
      # Graviton: no ami, so the module picks the arm64 Amazon Linux 2023
      # parameter (resolve:ssm:..., stored as is by moto).
      name              = "arm"
      labels            = ["linux", "arm64"]
      instance_types    = ["t4g.micro", "t4g.small"]
      subnets           = slice(sort(data.aws_subnets.default.ids), 0, 1)
      max_runners       = 2
      max_run_time_secs = 3600
      startup_script    = "echo arm startup"
      # This pool's jobs (only) read any bucket; the guardrails still hide
      # the other pools' startup scripts from them (the IAM matrix checks).
      extra_policy_arns = ["arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonS3ReadOnlyAccess"]
    },
  ]

  # Emulator switches (see the module README): a throw-away bucket, and no
  # TLS-only bucket policy (moto enforces it, and is reached over plain HTTP).
  bucket_force_destroy          = true
  enable_tls_only_bucket_policy = false
}

output "config_json" {
  description = "The rendered configuration document."
  value       = module.spotrunner.config_json
}

output "config_parameter" {
  description = "SSM parameter holding the configuration document."
  value       = module.spotrunner.config_parameter
}

output "lambda_environment" {
  description = "Environment of each Lambda, as deployed."
  value       = module.spotrunner.lambda_environment
}

output "function_names" {
  description = "Lambda function names."
  value       = module.spotrunner.function_names
}

output "role_arns" {
  description = "IAM roles by Lambda (and runner)."
  value       = module.spotrunner.role_arns
}

output "jobs_queue_url" {
  description = "Jobs queue URL."
  value       = module.spotrunner.jobs_queue_url
}

output "bootstrap_queue_url" {
  description = "Bootstrap queue URL."
  value       = module.spotrunner.bootstrap_queue_url
}

output "dlq_url" {
  description = "Dead-letter queue URL."
  value       = module.spotrunner.dlq_url
}

output "bootstrap_dlq_url" {
  description = "Bootstrap queue's dead-letter queue URL."
  value       = module.spotrunner.bootstrap_dlq_url
}

output "stop_events_queue_url" {
  description = "Stop-events queue URL (EventBridge -> stop-runner)."
  value       = module.spotrunner.stop_events_queue_url
}

output "stop_events_dlq_url" {
  description = "Stop-events queue's dead-letter queue URL."
  value       = module.spotrunner.stop_events_dlq_url
}

output "event_source_mappings" {
  description = "SQS event source mappings by queue."
  value       = module.spotrunner.event_source_mappings
}

output "ledger_table" {
  description = "Ledger table name."
  value       = module.spotrunner.ledger_table
}

output "bucket" {
  description = "Runner bucket."
  value       = module.spotrunner.bucket
}

output "ssm_document" {
  description = "SSM command document."
  value       = module.spotrunner.ssm_document
}

output "webhook_url" {
  description = "Webhook URL (API Gateway on the emulator)."
  value       = module.spotrunner.webhook_url
}

output "launch_templates" {
  description = "Launch templates by pool."
  value       = module.spotrunner.launch_templates
}

output "event_rules" {
  description = "EventBridge rules."
  value       = module.spotrunner.event_rules
}

output "moto_endpoint" {
  description = "The emulator endpoint this deployment lives on."
  value       = local.endpoint
}

output "region" {
  description = "Region of the deployment."
  value       = var.region
}

output "webhook_secret_parameters" {
  description = "SSM parameters of the webhook secret (tests read the value from moto to sign deliveries)."
  value       = module.spotrunner.webhook_secret_parameters
}

output "github_credential_parameter" {
  description = "SSM parameter of the GitHub token."
  value       = module.spotrunner.github_credential_parameter
}

output "jit_parameter_prefix" {
  description = "Prefix of the JIT config parameters."
  value       = module.spotrunner.jit_parameter_prefix
}

output "bootstrap_script_key" {
  description = "Key of bootstrap.sh in the bucket."
  value       = module.spotrunner.bootstrap_script_key
}

output "runner_instance_profile" {
  description = "Runner instance profiles by pool."
  value       = module.spotrunner.runner_instance_profile
}

output "runner_roles" {
  description = "Each pool's runner role, security groups, startup script, extra policies and credential binding."
  value       = module.spotrunner.runner_roles
}

output "parameter_kms_key_arn" {
  description = "The customer-managed key of the SecureString parameters."
  value       = aws_kms_key.parameters.arn
}

output "prefix" {
  description = "Deployment name."
  value       = var.prefix
}
