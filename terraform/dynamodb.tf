# The ledger: jobs, runners and capacity counters in one table, keyed by the
# string `pk`; `expires_at` (epoch seconds) is the TTL attribute. Must match
# crates/aws/src/dynamodb.rs (`create_table`).

resource "aws_dynamodb_table" "ledger" {
  name         = "${var.prefix}-ledger"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = var.enable_point_in_time_recovery
  }

  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-managed key (aws/dynamodb); a customer-managed KMS key adds cost and key-policy management for no gain here (items hold job ids, runner names and counters, no secrets).
  server_side_encryption {
    enabled = true
  }

  deletion_protection_enabled = false

  tags = local.tags
}
