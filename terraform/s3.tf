# The runner bucket: bootstrap.sh (fetched by the SSM document), startup/<pool>.sh
# (pool startup scripts) and runner-cache/ (the actions/runner tarballs).

resource "aws_s3_bucket" "runner" {
  #checkov:skip=CKV_AWS_18:Server access logging needs a second (log) bucket; the objects are a public script and public runner tarballs, reads are by the runner role only and visible in CloudTrail.
  #checkov:skip=CKV_AWS_144:Cross-region replication is not needed: every object is re-creatable (terraform apply uploads the scripts, the cache refills from GitHub releases).
  #checkov:skip=CKV2_AWS_62:No consumer for S3 event notifications; nothing reacts to object changes.
  bucket        = local.bucket_name
  force_destroy = var.bucket_force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_versioning" "runner" {
  bucket = aws_s3_bucket.runner.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "runner" {
  bucket = aws_s3_bucket.runner.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms" # the AWS-managed aws/s3 key
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "runner" {
  bucket                  = aws_s3_bucket.runner.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "runner" {
  bucket = aws_s3_bucket.runner.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "runner" {
  bucket = aws_s3_bucket.runner.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.runner]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.runner.arn, "${aws_s3_bucket.runner.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "runner" {
  count = var.enable_tls_only_bucket_policy ? 1 : 0

  bucket = aws_s3_bucket.runner.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.runner]
}

resource "aws_s3_object" "bootstrap" {
  bucket                 = aws_s3_bucket.runner.id
  key                    = local.bootstrap_script_key
  source                 = "${path.module}/../scripts/runner/bootstrap.sh"
  source_hash            = filemd5("${path.module}/../scripts/runner/bootstrap.sh")
  content_type           = "text/x-shellscript"
  server_side_encryption = "aws:kms"
  tags                   = local.tags

  depends_on = [aws_s3_bucket_server_side_encryption_configuration.runner]
}

# create-runner passes startup/<pool>.sh to the SSM document when a pool has a
# startup script (crates/core/src/create_runner/bootstrap.rs).
resource "aws_s3_object" "startup_script" {
  for_each = { for name, p in local.pools : name => p if p.startup_script != null }

  bucket                 = aws_s3_bucket.runner.id
  key                    = local.startup_script_key[each.key]
  content                = each.value.startup_script
  content_type           = "text/x-shellscript"
  server_side_encryption = "aws:kms"
  tags                   = local.tags

  depends_on = [aws_s3_bucket_server_side_encryption_configuration.runner]
}
