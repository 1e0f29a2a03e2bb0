# Per pool: one launch template, its runner role's instance profile
# (runner.tf) and, unless the pool names its own, a security group of the
# module: egress only, no ingress at all, so runners (of any pool) cannot
# reach each other nor be reached.

locals {
  pools_with_module_sg = { for name, p in local.pools : name => p if length(p.security_group_ids) == 0 }
  pool_security_group_ids = {
    for name, p in local.pools : name => length(p.security_group_ids) > 0 ? p.security_group_ids : [aws_security_group.pool[name].id]
  }
}

# The pool's VPC: that of its first subnet (a fleet's subnets share one VPC);
# a pool without subnets launches in the default VPC.
data "aws_subnet" "pool" {
  for_each = { for name, p in local.pools_with_module_sg : name => p if length(p.subnets) > 0 }

  id = each.value.subnets[0]
}

resource "aws_security_group" "pool" {
  #checkov:skip=CKV_AWS_382:Runners need the internet (GitHub, package registries, container registries, any port a job uses); name a pool's own security_group_ids for a tighter egress.
  #checkov:skip=CKV2_AWS_5:Attached through the pool's launch template (network interface), which checkov does not follow.
  for_each = local.pools_with_module_sg

  name        = "${var.prefix}-runner-${each.key}"
  description = "spotrunner ${var.prefix}: runners of pool ${each.key}; egress only, no ingress (not even from each other)"
  vpc_id      = length(each.value.subnets) > 0 ? data.aws_subnet.pool[each.key].vpc_id : null

  # No ingress: the SSM agent dials out, nothing dials in.
  ingress = []
  egress = [{
    description      = "GitHub, AWS APIs and whatever the job downloads"
    from_port        = 0
    to_port          = 0
    protocol         = "-1"
    cidr_blocks      = ["0.0.0.0/0"]
    ipv6_cidr_blocks = ["::/0"]
    prefix_list_ids  = []
    security_groups  = []
    self             = false
  }]
  revoke_rules_on_delete = true

  tags = merge(local.tags, { "spotrunner:pool" = each.key, Name = "${var.prefix}-runner-${each.key}" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_launch_template" "pool" {
  for_each = local.pools

  name        = "${var.prefix}-${each.key}"
  description = "spotrunner ${var.prefix}: runners of pool ${each.key}"
  # An AMI id, or resolve:ssm:<public parameter> resolved by EC2 at launch;
  # by default Amazon Linux 2023 of the pool's architecture (arch.tf).
  image_id = local.pool_ami[each.key]

  instance_initiated_shutdown_behavior = "terminate"
  update_default_version               = true
  ebs_optimized                        = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.runner[each.key].arn
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

  # The pool's security groups, or the module's; a pool naming its own keeps
  # no public address, the module's leaves it to the subnet.
  network_interfaces {
    associate_public_ip_address = length(each.value.security_group_ids) > 0 ? false : null
    delete_on_termination       = true
    security_groups             = local.pool_security_group_ids[each.key]
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

