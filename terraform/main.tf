data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  # The tag every EC2 instance, JIT parameter and IAM condition of this deployment carries.
  deployment_tag = "spotrunner:deployment"

  tags = merge(var.tags, { (local.deployment_tag) = var.prefix })

  pools = { for p in var.pools : p.name => p }

  bucket_name          = coalesce(var.bucket_name, "${var.prefix}-runner-${local.account_id}-${local.region}")
  bootstrap_script_key = "bootstrap.sh"

  # SSM names. JIT parameters are /<deployment>/jit/<runner> (crates/core/src/names.rs).
  ssm_prefix        = "/${var.prefix}"
  jit_prefix        = "/${var.prefix}/jit/"
  config_parameter  = "/${var.prefix}/config"
  ssm_document_name = "${var.prefix}-runner"

  ssm_parameter_arn_prefix = "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter"
}
