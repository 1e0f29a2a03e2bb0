# Per pool: the CPU architecture and the AMI.
#
# A pool's architecture is its explicit `architecture`, else that of its
# instance types (a mix is refused by var.pools' validation), and its AMI is its
# `ami`, else the latest Amazon Linux 2023 for that architecture (a public SSM
# parameter EC2 resolves at launch). The architecture goes into the
# configuration document, so the Lambdas send the matching runnerArch.

locals {
  # Graviton (arm64) instance families: a1, and those with a `g` right after
  # the generation digits (t4g, m7gd, c6gn, im4gn, is4gen, g5g, hpc7g). Matched
  # against the family (the part before the first dot), lowercased. Mirrors
  # Architecture::of_instance_type in crates/core/src/config/arch.rs.
  graviton_family = "^(a1|[a-z]+[0-9]+g[a-z]*)$"

  pool_type_archs = { for p in var.pools : p.name => distinct([
    for t in p.instance_types :
    can(regex(local.graviton_family, lower(split(".", t)[0]))) ? "arm64" : "x64"
  ]) }

  pool_arch = { for p in var.pools : p.name =>
    p.architecture != null ? p.architecture : try(local.pool_type_archs[p.name][0], "x64")
  }

  default_ami = {
    x64   = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    arm64 = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
  }

  pool_ami = { for p in var.pools : p.name =>
    p.ami != null ? p.ami : local.default_ami[local.pool_arch[p.name]]
  }
}
