# spotrunner for one GitHub organisation with a GitHub App, two pools:
#   cpu       spot, price-capacity-optimized over three instance types, on-demand
#             when spot has no capacity
#   ondemand  on-demand only, for jobs that must not be interrupted
#             (runs-on: [self-hosted, linux, x64, on-demand])
#
#   scripts/package-lambdas.sh          # target/lambda/<fn>/bootstrap.zip
#   cp terraform.tfvars.example terraform.tfvars   # and fill it in
#   terraform init && terraform apply
#   spotrunner github-app create --org <github_org> --ssm-prefix /sr \
#     --webhook-url "$(terraform output -raw webhook_url)"
#
# The GitHub App does not exist yet at apply time: `spotrunner github-app
# create` makes it from a manifest (exactly the permissions spotrunner uses, the
# workflow_job event, this deployment's webhook URL) and writes its id, private
# key and webhook secret to the three SSM parameters below, which the Lambdas
# read at cold start. See README.md, "Deploy on AWS".

terraform {
  required_version = ">= 1.9.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project = "spotrunner"
    }
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "github_org" {
  description = "The GitHub organisation whose jobs these runners take."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (with a route to the internet through NAT) the runners launch in."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the runners (egress to GitHub and AWS; no ingress needed: SSM only)."
  type        = list(string)
}

variable "alarm_topic_arn" {
  description = "SNS topic for the alarms; null for none."
  type        = string
  default     = null
}

module "spotrunner" {
  source = "../.."

  prefix         = "sr"
  lambda_zip_dir = "${path.module}/../../../target/lambda"

  # Written by `spotrunner github-app create --ssm-prefix /sr` (after apply).
  github_auth_type                 = "app"
  github_app_id_parameter          = "/sr/github/app-id"
  github_app_private_key_parameter = "/sr/github/app-private-key"
  webhook_secret_parameter         = "/sr/webhook/secret"

  allowed_owners   = [var.github_org]
  max_total_weight = 40

  pools = [
    {
      name               = "cpu"
      labels             = ["linux", "x64"]
      ami                = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
      instance_types     = ["m7i.large", "m6i.large", "m5.large"]
      subnets            = var.subnet_ids
      security_group_ids = var.security_group_ids
      capacity_type      = "spot"
      on_demand_fallback = true
      max_runners        = 20
      idle_timeout_secs  = 900
      max_run_time_secs  = 21600
      startup_script     = "dnf install -y -q git jq libicu"
    },
    {
      name               = "ondemand"
      labels             = ["linux", "x64", "on-demand"]
      ami                = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
      instance_types     = ["m7i.xlarge"]
      subnets            = var.subnet_ids
      security_group_ids = var.security_group_ids
      capacity_type      = "on-demand"
      max_runners        = 5
      weight             = 2
      max_run_time_secs  = 21600
      startup_script     = "dnf install -y -q git jq libicu"
    },
    {
      # Graviton: arm64 from the instance types; no ami, so the latest
      # Amazon Linux 2023 for arm64. Jobs ask for runs-on: [self-hosted, arm64].
      name               = "arm"
      labels             = ["linux", "arm64"]
      instance_types     = ["m7g.large", "c7g.large", "m6g.large"]
      subnets            = var.subnet_ids
      security_group_ids = var.security_group_ids
      on_demand_fallback = true
      max_runners        = 20
      max_run_time_secs  = 21600
      startup_script     = "dnf install -y -q git jq libicu"
    },
  ]

  alarm_actions = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
}

output "webhook_url" {
  description = "Payload URL for the GitHub App's webhook."
  value       = module.spotrunner.webhook_url
}

output "config_parameter" {
  description = "SSM parameter with the configuration document."
  value       = module.spotrunner.config_parameter
}

output "bucket" {
  description = "Runner bucket (seed runner-cache/ with the runner tarball, see the module README)."
  value       = module.spotrunner.bucket
}

output "cli_environment" {
  description = "Exports for the spotrunner CLI: eval \"$(terraform output -raw cli_environment)\"."
  value       = module.spotrunner.cli_environment
}
