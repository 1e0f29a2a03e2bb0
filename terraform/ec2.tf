# Per pool: one launch template. All pools share the runner instance role.

resource "aws_launch_template" "pool" {
  for_each = local.pools

  name        = "${var.prefix}-${each.key}"
  description = "spotrunner ${var.prefix}: runners of pool ${each.key}"
  # An AMI id, or resolve:ssm:<public parameter> resolved by EC2 at launch.
  image_id = each.value.ami

  instance_initiated_shutdown_behavior = "terminate"
  update_default_version               = true
  ebs_optimized                        = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.runner.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }

  monitoring {
    enabled = false
  }

  block_device_mappings {
    device_name = each.value.root_device_name
    ebs {
      volume_size           = each.value.root_volume_size_gb
      volume_type           = each.value.root_volume_type
      encrypted             = true
      delete_on_termination = true
    }
  }

  dynamic "network_interfaces" {
    for_each = length(each.value.security_group_ids) > 0 ? [1] : []
    content {
      associate_public_ip_address = false
      delete_on_termination       = true
      security_groups             = each.value.security_group_ids
    }
  }

  # Instance tags come with the CreateFleet request (deployment, pool, job,
  # runner); volumes and network interfaces get theirs here.
  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { "spotrunner:pool" = each.key })
  }

  tag_specifications {
    resource_type = "network-interface"
    tags          = merge(local.tags, { "spotrunner:pool" = each.key })
  }

  tags = merge(local.tags, { "spotrunner:pool" = each.key })
}

# --- runner instance role ----------------------------------------------------

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "runner" {
  name               = "${var.prefix}-runner"
  description        = "spotrunner ${var.prefix}: runner instances (SSM agent, own JIT parameter, bucket reads)"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "runner_ssm_core" {
  role       = aws_iam_role.runner.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy_attachment" "runner_extra" {
  for_each = toset(var.runner_extra_policy_arns)

  role       = aws_iam_role.runner.name
  policy_arn = each.value
}

data "aws_iam_policy_document" "runner" {
  # Read, then delete, only the JIT parameter create-runner tagged with this
  # instance's id (crates/core/src/create_runner/launch.rs tags
  # `spotrunner:instance-id` after the launch).
  statement {
    sid       = "OwnJitParameter"
    actions   = ["ssm:GetParameter", "ssm:DeleteParameter"]
    resources = [local.jit_parameters_arn]
    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/spotrunner:instance-id"
      values   = ["$${ec2:InstanceID}"]
    }
  }

  statement {
    sid     = "ReadRunnerBucket"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.runner.arn}/${local.bootstrap_script_key}",
      "${aws_s3_bucket.runner.arn}/startup/*",
      "${aws_s3_bucket.runner.arn}/runner-cache/*",
    ]
  }

  dynamic "statement" {
    for_each = var.runner_cache_upload ? [1] : []
    content {
      sid       = "FillRunnerCache"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.runner.arn}/runner-cache/*"]
    }
  }

  dynamic "statement" {
    for_each = var.parameter_kms_key_arn == null ? [] : [1]
    content {
      sid       = "DecryptJitParameter"
      actions   = ["kms:Decrypt"]
      resources = [var.parameter_kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "runner" {
  name   = "${var.prefix}-runner"
  role   = aws_iam_role.runner.id
  policy = data.aws_iam_policy_document.runner.json
}

resource "aws_iam_instance_profile" "runner" {
  name = "${var.prefix}-runner"
  role = aws_iam_role.runner.name
  tags = local.tags
}
