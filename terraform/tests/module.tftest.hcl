# The module's logic against a mocked AWS provider (no credentials, no network):
# IAM scoping, queue redrive, per-pool launch templates, schedules, event
# sources, the Lambda environment contract and the rendered configuration.
# Run: TF_CLI_CONFIG_FILE=terraform/terraformrc terraform -chdir=terraform test

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_region" {
    defaults = {
      name = "eu-west-1"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  # The provider validates ARNs even when mocked: give every ARN a valid shape.
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/srtest-mock"
    }
  }
  mock_resource "aws_iam_policy" {
    defaults = {
      arn = "arn:aws:iam::123456789012:policy/srtest-mock"
    }
  }
  mock_data "aws_subnet" {
    defaults = {
      vpc_id = "vpc-0mock"
    }
  }
  mock_resource "aws_security_group" {
    defaults = {
      id  = "sg-0mock"
      arn = "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0mock"
    }
  }
  mock_resource "aws_cloudwatch_metric_alarm" {
    defaults = {
      arn = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:srtest-mock"
    }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = {
      arn = "arn:aws:iam::123456789012:instance-profile/srtest-runner"
    }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/srtest-mock"
    }
  }
  mock_resource "aws_cloudwatch_event_rule" {
    defaults = {
      arn = "arn:aws:events:eu-west-1:123456789012:rule/srtest-mock"
    }
  }
  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::srtest-runner-123456789012-eu-west-1"
    }
  }
  mock_resource "aws_dynamodb_table" {
    defaults = {
      arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/srtest-ledger"
    }
  }
  mock_resource "aws_launch_template" {
    defaults = {
      arn = "arn:aws:ec2:eu-west-1:123456789012:launch-template/lt-0123456789abcdef0"
    }
  }
  mock_resource "aws_ssm_document" {
    defaults = {
      arn = "arn:aws:ssm:eu-west-1:123456789012:document/srtest-runner"
    }
  }
  mock_resource "aws_ssm_parameter" {
    defaults = {
      arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/srtest/mock"
    }
  }
  mock_resource "aws_apigatewayv2_api" {
    defaults = {
      arn           = "arn:aws:apigateway:eu-west-1::/apis/abc123"
      execution_arn = "arn:aws:execute-api:eu-west-1:123456789012:abc123"
    }
  }
  mock_resource "aws_apigatewayv2_stage" {
    defaults = {
      arn           = "arn:aws:apigateway:eu-west-1::/apis/abc123/stages/$default"
      execution_arn = "arn:aws:execute-api:eu-west-1:123456789012:abc123/$default"
      invoke_url    = "https://abc123.execute-api.eu-west-1.amazonaws.com/"
    }
  }
  mock_resource "aws_lambda_function" {
    defaults = {
      arn           = "arn:aws:lambda:eu-west-1:123456789012:function:srtest-mock"
      invoke_arn    = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:123456789012:function:srtest-mock/invocations"
      qualified_arn = "arn:aws:lambda:eu-west-1:123456789012:function:srtest-mock:$LATEST"
    }
  }
  mock_resource "aws_sqs_queue" {
    defaults = {
      arn = "arn:aws:sqs:eu-west-1:123456789012:srtest-mock"
      url = "https://sqs.eu-west-1.amazonaws.com/123456789012/srtest-mock"
    }
  }
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
}

# Distinct ARNs where the assertions compare them.
override_resource {
  target = aws_lambda_function.fn["webhook"]
  values = {
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:srtest-webhook"
  }
}

override_resource {
  target = aws_lambda_function.fn["create-runner"]
  values = {
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:srtest-create-runner"
  }
}

override_resource {
  target = aws_lambda_function.fn["stop-runner"]
  values = {
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:srtest-stop-runner"
  }
}

override_resource {
  target = aws_lambda_function.fn["dlq-mover"]
  values = {
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:srtest-dlq-mover"
  }
}

override_resource {
  target = aws_lambda_function.fn["janitor"]
  values = {
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:srtest-janitor"
  }
}

override_resource {
  target = aws_lambda_function.fn["recovery"]
  values = {
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:srtest-recovery"
  }
}

override_resource {
  target = aws_sqs_queue.jobs
  values = {
    arn = "arn:aws:sqs:eu-west-1:123456789012:srtest-jobs"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/srtest-jobs"
  }
}

override_resource {
  target = aws_sqs_queue.bootstrap
  values = {
    arn = "arn:aws:sqs:eu-west-1:123456789012:srtest-bootstrap"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/srtest-bootstrap"
  }
}

override_resource {
  target = aws_sqs_queue.dlq
  values = {
    arn = "arn:aws:sqs:eu-west-1:123456789012:srtest-jobs-dlq"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/srtest-jobs-dlq"
  }
}

override_resource {
  target = aws_sqs_queue.bootstrap_dlq
  values = {
    arn = "arn:aws:sqs:eu-west-1:123456789012:srtest-bootstrap-dlq"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/srtest-bootstrap-dlq"
  }
}

override_resource {
  target = aws_sqs_queue.stop_events
  values = {
    arn = "arn:aws:sqs:eu-west-1:123456789012:srtest-stop-events"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/srtest-stop-events"
  }
}

override_resource {
  target = aws_sqs_queue.stop_events_dlq
  values = {
    arn = "arn:aws:sqs:eu-west-1:123456789012:srtest-stop-events-dlq"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/srtest-stop-events-dlq"
  }
}

override_resource {
  target = aws_cloudwatch_event_rule.stop_runner["ssm-command"]
  values = {
    arn = "arn:aws:events:eu-west-1:123456789012:rule/srtest-ssm-command"
  }
}

override_resource {
  target = aws_cloudwatch_event_rule.stop_runner["spot-interruption"]
  values = {
    arn = "arn:aws:events:eu-west-1:123456789012:rule/srtest-spot-interruption"
  }
}

override_resource {
  target = aws_cloudwatch_event_rule.stop_runner["instance-state"]
  values = {
    arn = "arn:aws:events:eu-west-1:123456789012:rule/srtest-instance-state"
  }
}

variables {
  prefix           = "srtest"
  lambda_zip_dir   = "tests/fixtures/lambda"
  github_app_id    = 4242
  webhook_secret   = "test-secret-0123456789abcdef0123456789"
  allowed_owners   = ["my-org"]
  max_total_weight = 10

  github_app_private_key = "-----BEGIN RSA PRIVATE KEY-----\nfake\n-----END RSA PRIVATE KEY-----\n"

  pools = [
    {
      name               = "cpu"
      labels             = ["linux", "x64"]
      instance_types     = ["m7i.large", "m6i.large"]
      subnets            = ["subnet-0abc", "subnet-0def"]
      on_demand_fallback = true
      max_runners        = 20
      startup_script     = "dnf install -y jq"
      sizing             = { cpu = [2, 16], families = ["m7i", "c7i"] }
    },
    {
      name           = "od"
      labels         = ["linux", "x64", "on-demand"]
      ami            = "ami-0123456789abcdef0"
      instance_types = ["m7i.large"]
      subnets        = ["subnet-0abc"]
      capacity_type  = "on-demand"
      max_runners    = 4
      weight         = 2
    },
    {
      name           = "arm"
      labels         = ["linux", "arm64"]
      instance_types = ["m7g.large", "c7g.large"]
      subnets        = ["subnet-0abc"]
      max_runners    = 2
    },
  ]
}

run "terminate_is_conditioned_on_the_deployment_tag" {
  # Every statement, in every Lambda policy, that grants TerminateInstances or
  # CreateTags outside a launch is conditioned on spotrunner:deployment = prefix.
  assert {
    condition = alltrue(flatten([
      for fn, doc in data.aws_iam_policy_document.lambda : [
        for s in doc.statement : (
          !contains(s.actions, "ec2:TerminateInstances") ||
          anytrue([for c in s.condition :
            c.test == "StringEquals" &&
            c.variable == "aws:ResourceTag/spotrunner:deployment" &&
          toset(c.values) == toset(["srtest"])])
        )
      ]
    ]))
    error_message = "ec2:TerminateInstances must be conditioned on aws:ResourceTag/spotrunner:deployment = prefix"
  }

  assert {
    condition = alltrue(flatten([
      for fn, doc in data.aws_iam_policy_document.lambda : [
        for s in doc.statement : (
          !contains(s.actions, "ec2:CreateTags") ||
          anytrue([for c in s.condition :
            (c.variable == "aws:ResourceTag/spotrunner:deployment" && toset(c.values) == toset(["srtest"])) ||
          (c.variable == "ec2:CreateAction")])
        )
      ]
    ]))
    error_message = "ec2:CreateTags must be limited to our instances or to tagging at launch"
  }

  # Exactly the functions that clean up may terminate.
  assert {
    condition = toset([
      for fn, doc in data.aws_iam_policy_document.lambda : fn
      if anytrue([for s in doc.statement : contains(s.actions, "ec2:TerminateInstances")])
    ]) == toset(["create-runner", "stop-runner", "janitor"])
    error_message = "only create-runner, stop-runner and janitor may terminate instances"
  }

  # Launches must carry the deployment tag in the request.
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.lambda["create-runner"].statement :
      contains(s.actions, "ec2:CreateFleet") && toset(s.resources) == toset(["arn:aws:ec2:eu-west-1:123456789012:instance/*"]) &&
      anytrue([for c in s.condition : c.variable == "aws:RequestTag/spotrunner:deployment" && toset(c.values) == toset(["srtest"])])
    ])
    error_message = "CreateFleet/RunInstances on instances must require aws:RequestTag/spotrunner:deployment = prefix"
  }

  # No statement grants a launch on instances without that condition.
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.lambda["create-runner"].statement :
      !(contains(s.resources, "arn:aws:ec2:eu-west-1:123456789012:instance/*") && contains(s.actions, "ec2:RunInstances")) ||
      anytrue([for c in s.condition : c.variable == "aws:RequestTag/spotrunner:deployment"])
    ])
    error_message = "an unconditioned RunInstances on instance/* would launch untagged instances"
  }

  # RunInstances (direct, or what CreateFleet launches from the template) only
  # from this deployment's launch templates; the AMI only as the template names it.
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.lambda["create-runner"].statement :
      !contains(s.actions, "ec2:RunInstances") || s.sid == "RunSpotRequests" ||
      anytrue([for c in s.condition :
        c.test == "ArnEquals" && c.variable == "ec2:LaunchTemplate" &&
        toset(c.values) == toset([for lt in aws_launch_template.pool : lt.arn])
      ])
    ])
    error_message = "every RunInstances statement (but the spot request) must require ec2:LaunchTemplate = one of our launch templates"
  }
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.lambda["create-runner"].statement :
      !(contains(s.actions, "ec2:RunInstances") && anytrue([for r in s.resources : strcontains(r, ":image/")])) ||
      anytrue([for c in s.condition : c.variable == "ec2:IsLaunchTemplateResource" && toset(c.values) == toset(["true"])])
    ])
    error_message = "images only from the launch template (ec2:IsLaunchTemplateResource)"
  }
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.lambda["create-runner"].statement :
      !(contains(s.actions, "ec2:CreateFleet") && anytrue([for r in s.resources : strcontains(r, ":image/")]))
    ])
    error_message = "CreateFleet must not override the template's image"
  }

  # SendCommand on instances only when they carry our tag.
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.lambda["create-runner"].statement :
      !(contains(s.actions, "ssm:SendCommand") && contains(s.resources, "arn:aws:ec2:eu-west-1:123456789012:instance/*")) ||
      anytrue([for c in s.condition : c.variable == "ssm:resourceTag/spotrunner:deployment" && toset(c.values) == toset(["srtest"])])
    ])
    error_message = "ssm:SendCommand on instances must be conditioned on the deployment tag"
  }
}

run "ec2_and_parameter_reads_only_where_the_code_needs_them" {
  assert {
    condition = toset([
      for fn, doc in data.aws_iam_policy_document.lambda : fn
      if anytrue([for s in doc.statement : contains(s.actions, "ec2:DescribeInstances")])
    ]) == toset(["create-runner", "stop-runner", "janitor"])
    error_message = "only create-runner (a ClientToken mismatch), stop-runner and janitor describe instances"
  }
  assert {
    condition = toset([
      for fn, doc in data.aws_iam_policy_document.lambda : fn
      if anytrue([for s in doc.statement : contains(s.actions, "ssm:ListCommands")])
    ]) == toset(["create-runner"])
    error_message = "only create-runner lists commands (a retried bootstrap step)"
  }
  assert {
    condition = toset([
      for fn, doc in data.aws_iam_policy_document.lambda : fn
      if anytrue([for s in doc.statement : contains(s.actions, "ec2:CreateTags") && s.sid != "TagOnLaunchOnly"])
    ]) == toset(["janitor"])
    error_message = "only the janitor tags existing instances (tainted)"
  }
  assert {
    condition = toset([
      for fn, doc in data.aws_iam_policy_document.lambda : fn
      if anytrue([for s in doc.statement : contains(s.actions, "ssm:DescribeParameters")])
    ]) == toset(["janitor"])
    error_message = "only the janitor lists JIT parameters"
  }
}

run "secrets_reach_only_the_functions_that_use_them" {
  assert {
    condition = toset([
      for fn, doc in data.aws_iam_policy_document.lambda : fn
      if anytrue([for s in doc.statement : s.sid == "ReadGitHubCredential"])
    ]) == toset(["create-runner", "stop-runner", "janitor", "recovery"])
    error_message = "only create-runner, stop-runner, janitor and recovery read the GitHub credential"
  }
  assert {
    condition = toset([
      for fn, doc in data.aws_iam_policy_document.lambda : fn
      if anytrue([for s in doc.statement : s.sid == "ReadWebhookSecrets"])
    ]) == toset(["webhook"])
    error_message = "only the webhook reads the webhook secret"
  }
  assert {
    condition     = aws_lambda_function.fn["dlq-mover"].timeout == 120
    error_message = "dlq-mover's timeout covers 1000 messages at 50/s plus a minute, at least 120 s"
  }
}

run "pass_role_only_for_the_runner_role" {
  assert {
    condition = alltrue(flatten([
      for fn, doc in data.aws_iam_policy_document.lambda : [
        for s in doc.statement : !contains(s.actions, "iam:PassRole") || (
          fn == "create-runner" && toset(s.resources) == toset([for r in aws_iam_role.runner : r.arn]) &&
          anytrue([for c in s.condition : c.variable == "iam:PassedToService" && toset(c.values) == toset(["ec2.amazonaws.com"])])
        )
      ]
    ]))
    error_message = "iam:PassRole must be create-runner's only, for the runner role only, to EC2 only"
  }
}

run "runner_role_reads_only_its_own_jit_parameter" {
  # The grant: Get/DeleteParameter on /<prefix>/jit/* only where the parameter's
  # spotrunner:instance-arn tag is the calling instance (ec2:SourceInstanceARN),
  # under both tag-key spellings. The effective permissions (with the
  # guardrails) are checked by scripts/iam/matrix.mjs after the apply on moto.
  assert {
    condition = length([
      for s in data.aws_iam_policy_document.runner["cpu"].statement : s
      if toset(s.actions) == toset(["ssm:GetParameter", "ssm:DeleteParameter"]) &&
      toset(s.resources) == toset(["arn:aws:ssm:eu-west-1:123456789012:parameter/srtest/jit/*"]) &&
      length(s.condition) == 1 &&
      anytrue([for c in s.condition :
        c.test == "StringEquals" &&
        contains(["ssm:resourceTag/spotrunner:instance-arn", "aws:ResourceTag/spotrunner:instance-arn"], c.variable) &&
        toset(c.values) == toset(["$${ec2:SourceInstanceARN}"])
      ])
    ]) == 2
    error_message = "runner role: Get/DeleteParameter on /<prefix>/jit/* conditioned on spotrunner:instance-arn = $${ec2:SourceInstanceARN}"
  }

  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.runner["cpu"].statement :
      alltrue([for a in s.actions : contains([
        "ssm:GetParameter", "ssm:DeleteParameter", "s3:GetObject",
        "ssm:UpdateInstanceInformation", "ssm:ListInstanceAssociations",
        "ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage",
        "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply",
        "ssmmessages:CreateControlChannel", "ssmmessages:OpenControlChannel",
      ], a)])
    ])
    error_message = "runner role: its JIT parameter, bucket reads and the SSM agent's own calls, nothing else (runner_cache_upload off, no KMS key)"
  }

  assert {
    condition     = alltrue([for s in data.aws_iam_policy_document.runner["cpu"].statement : !contains(s.actions, "ssm:GetParameter") || alltrue([for r in s.resources : startswith(r, "arn:aws:ssm:eu-west-1:123456789012:parameter/srtest/jit/")])])
    error_message = "runner role: no parameter read outside /<prefix>/jit/"
  }

  # No AWS managed policy (AmazonSSMManagedInstanceCore reads every parameter).
  assert {
    condition     = length(aws_iam_role_policy_attachment.runner_extra) == 0
    error_message = "runner role: no attached policy by default"
  }

  # The guardrails: explicit Denies on the secrets, whatever else is attached.
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails["cpu"].statement :
      s.effect == "Deny" && s.sid == "DenySecretParameters" &&
      toset(s.resources) == toset([
        "arn:aws:ssm:eu-west-1:123456789012:parameter/srtest/github/app-private-key",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/srtest/webhook/secret",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/srtest/config",
      ])
    ])
    error_message = "runner guardrails: deny the GitHub credential, webhook secret and configuration"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails["cpu"].statement :
      s.effect == "Deny" && s.sid == "DenyParametersOfOthers" && length(s.condition) == 2 &&
      alltrue([for c in s.condition : c.test == "StringNotEquals" && toset(c.values) == toset(["$${ec2:SourceInstanceARN}"])])
    ])
    error_message = "runner guardrails: deny every parameter of the deployment not bound to this instance"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails["cpu"].statement :
      s.effect == "Deny" && s.sid == "DenyBootstrapWrites" &&
      toset(s.resources) == toset(["arn:aws:s3:::srtest-runner-123456789012-eu-west-1/bootstrap.sh", "arn:aws:s3:::srtest-runner-123456789012-eu-west-1/startup/*"])
    ])
    error_message = "runner guardrails: bootstrap.sh and startup scripts are read-only"
  }
  assert {
    condition     = alltrue([for p, g in aws_iam_role_policy.runner_guardrails : g.role == aws_iam_role.runner[p].id])
    error_message = "runner guardrails are an inline policy of each pool's runner role"
  }
}

run "runner_extra_policies_keep_the_guardrails" {
  variables {
    runner_extra_policy_arns = ["arn:aws:iam::aws:policy/AdministratorAccess"]
    runner_cache_upload      = true
  }
  assert {
    condition     = length(aws_iam_role_policy_attachment.runner_extra) == 3 && alltrue([for g in aws_iam_role_policy.runner_guardrails : length(g.policy) > 0])
    error_message = "extra policies are attached next to the guardrails"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner["cpu"].statement :
      s.sid == "FillRunnerCache" && anytrue([for c in s.condition : c.variable == "s3:if-none-match" && toset(c.values) == toset(["*"])])
    ])
    error_message = "runner_cache_upload: new objects only (If-None-Match: *)"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails["cpu"].statement :
      s.sid == "DenyRunnerCacheOverwrite" && anytrue([for c in s.condition : c.test == "StringNotEquals" && c.variable == "s3:if-none-match"])
    ])
    error_message = "runner_cache_upload: overwrites stay denied"
  }
}

run "parameter_kms_key" {
  variables {
    parameter_kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }
  assert {
    condition     = aws_lambda_function.fn["create-runner"].environment[0].variables["SPOTRUNNER_PARAMETER_KMS_KEY"] == "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    error_message = "create-runner encrypts JIT parameters with the key (SPOTRUNNER_PARAMETER_KMS_KEY)"
  }
  assert {
    condition     = alltrue([for k, f in aws_lambda_function.fn : k == "create-runner" || !contains(keys(f.environment[0].variables), "SPOTRUNNER_PARAMETER_KMS_KEY")])
    error_message = "only create-runner gets the key"
  }
  # Every KMS grant names the parameters by encryption context, through SSM only.
  assert {
    condition = alltrue(flatten([
      for fn, doc in data.aws_iam_policy_document.lambda : [
        for s in doc.statement : !anytrue([for a in s.actions : startswith(a, "kms:")]) || (
          anytrue([for c in s.condition : c.variable == "kms:EncryptionContext:PARAMETER_ARN"]) &&
          anytrue([for c in s.condition : c.variable == "kms:ViaService" && toset(c.values) == toset(["ssm.eu-west-1.amazonaws.com"])])
        )
      ]
    ]))
    error_message = "Lambda KMS grants: encryption context PARAMETER_ARN and kms:ViaService ssm"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.lambda["webhook"].statement :
      toset(s.actions) == toset(["kms:Decrypt"]) && anytrue([for c in s.condition :
        c.variable == "kms:EncryptionContext:PARAMETER_ARN" && toset(c.values) == toset([
          "arn:aws:ssm:eu-west-1:123456789012:parameter/srtest/config",
          "arn:aws:ssm:eu-west-1:123456789012:parameter/srtest/webhook/secret",
        ])
      ])
    ])
    error_message = "the webhook decrypts its configuration and webhook secret only"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.lambda["create-runner"].statement :
      toset(s.actions) == toset(["kms:Encrypt", "kms:GenerateDataKey"]) && anytrue([for c in s.condition :
        c.test == "StringLike" && c.variable == "kms:EncryptionContext:PARAMETER_ARN" &&
        toset(c.values) == toset(["arn:aws:ssm:eu-west-1:123456789012:parameter/srtest/jit/*"])
      ])
    ])
    error_message = "create-runner encrypts JIT parameters only"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner["cpu"].statement :
      toset(s.actions) == toset(["kms:Decrypt"]) && anytrue([for c in s.condition :
        c.test == "StringLike" && c.variable == "kms:EncryptionContext:PARAMETER_ARN" &&
        toset(c.values) == toset(["arn:aws:ssm:eu-west-1:123456789012:parameter/srtest/jit/*"])
      ])
    ])
    error_message = "the runner decrypts JIT parameters only"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails["cpu"].statement :
      s.effect == "Deny" && s.sid == "DenyParameterKeyOutsideJit"
    ])
    error_message = "runner guardrails: the key decrypts nothing but JIT parameters"
  }
}

run "kms_alias_is_refused" {
  command = plan
  variables {
    parameter_kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:alias/spotrunner"
  }
  expect_failures = [var.parameter_kms_key_arn]
}

run "ledger_writes_by_key_kind" {
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.lambda["webhook"].statement :
      contains(s.actions, "dynamodb:PutItem") &&
      anytrue([for c in s.condition : c.test == "ForAllValues:StringLike" && c.variable == "dynamodb:LeadingKeys" && toset(c.values) == toset(["job#*"])])
    ])
    error_message = "the webhook writes job#<id> items only"
  }
  assert {
    condition = alltrue(flatten([
      for fn, doc in data.aws_iam_policy_document.lambda : [
        for s in doc.statement : !anytrue([for a in s.actions : contains(["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"], a)]) ||
        anytrue([for c in s.condition : c.variable == "dynamodb:LeadingKeys"])
      ]
    ]))
    error_message = "every ledger write is limited by key kind (dynamodb:LeadingKeys)"
  }
  assert {
    condition = toset([
      for fn, doc in data.aws_iam_policy_document.lambda : fn
      if anytrue([for s in doc.statement : contains(s.actions, "dynamodb:Scan")])
    ]) == toset(["stop-runner", "janitor"])
    error_message = "only stop-runner and janitor scan the ledger"
  }
}

run "jobs_queue_redrives_after_three_receives" {
  assert {
    condition     = jsondecode(aws_sqs_queue.jobs.redrive_policy).maxReceiveCount == 3
    error_message = "jobs queue must redrive to the DLQ after 3 receives"
  }
  assert {
    condition     = jsondecode(aws_sqs_queue.jobs.redrive_policy).deadLetterTargetArn == aws_sqs_queue.dlq.arn
    error_message = "jobs queue must redrive into the DLQ"
  }
  assert {
    condition = alltrue([for q in [aws_sqs_queue.jobs, aws_sqs_queue.bootstrap, aws_sqs_queue.dlq, aws_sqs_queue.bootstrap_dlq, aws_sqs_queue.stop_events, aws_sqs_queue.stop_events_dlq] :
    q.sqs_managed_sse_enabled])
    error_message = "all queues must have SSE"
  }
  assert {
    condition     = jsondecode(aws_sqs_queue.bootstrap.redrive_policy).deadLetterTargetArn == aws_sqs_queue.bootstrap_dlq.arn && jsondecode(aws_sqs_queue.bootstrap.redrive_policy).maxReceiveCount == 3
    error_message = "the bootstrap queue redrives into its own DLQ (not the jobs DLQ) after 3 receives"
  }
  assert {
    condition     = aws_sqs_queue.bootstrap_dlq.name == "srtest-bootstrap-dlq" && aws_sqs_queue.bootstrap_dlq.message_retention_seconds == 1209600
    error_message = "the bootstrap DLQ keeps messages 14 days"
  }
  assert {
    condition = alltrue([
      for m in aws_lambda_event_source_mapping.create_runner :
      toset(m.function_response_types) == toset(["ReportBatchItemFailures"]) && m.function_name == aws_lambda_function.fn["create-runner"].arn
    ]) && length(aws_lambda_event_source_mapping.create_runner) == 2
    error_message = "jobs and bootstrap queues feed create-runner with ReportBatchItemFailures"
  }
  assert {
    condition     = aws_sqs_queue.jobs.visibility_timeout_seconds >= aws_lambda_function.fn["create-runner"].timeout
    error_message = "the jobs queue's visibility timeout must outlast create-runner's timeout"
  }
}

run "one_launch_template_per_pool" {
  assert {
    condition     = length(aws_launch_template.pool) == 3
    error_message = "one launch template per pool"
  }
  assert {
    condition     = toset([for lt in aws_launch_template.pool : lt.name]) == toset(["srtest-cpu", "srtest-od", "srtest-arm"])
    error_message = "launch templates are named <prefix>-<pool>"
  }
  assert {
    condition = alltrue([for lt in aws_launch_template.pool :
      lt.metadata_options[0].http_tokens == "required" &&
      lt.instance_initiated_shutdown_behavior == "terminate" &&
      lt.block_device_mappings[0].ebs[0].encrypted == "true"
    ])
    error_message = "launch templates: IMDSv2 required, shutdown terminates, encrypted root volume"
  }
  assert {
    condition     = [for p in jsondecode(output.config_json).pools : p.launch_template] == ["srtest-cpu", "srtest-od", "srtest-arm"]
    error_message = "the configuration names each pool's launch template"
  }
  assert {
    condition     = length(aws_s3_object.startup_script) == 1 && aws_s3_object.startup_script["cpu"].key == "startup/cpu.sh"
    error_message = "startup scripts are uploaded as startup/<pool>.sh"
  }
}

run "schedules_and_event_rules" {
  assert {
    condition     = aws_cloudwatch_event_rule.schedule["janitor"].schedule_expression == "rate(5 minutes)"
    error_message = "janitor runs every 5 minutes by default"
  }
  assert {
    condition     = aws_cloudwatch_event_rule.schedule["dlq-mover"].schedule_expression == "rate(1 hour)"
    error_message = "dlq-mover runs hourly by default"
  }
  assert {
    condition = (
      aws_cloudwatch_event_rule.schedule["recovery-redelivery"].schedule_expression == "rate(1 minute)" &&
      aws_cloudwatch_event_rule.schedule["recovery-sweep"].schedule_expression == "rate(5 minutes)" &&
      aws_cloudwatch_event_target.schedule["recovery-redelivery"].arn == aws_lambda_function.fn["recovery"].arn &&
      jsondecode(aws_cloudwatch_event_target.schedule["recovery-redelivery"].input).task == "redelivery" &&
      jsondecode(aws_cloudwatch_event_target.schedule["recovery-sweep"].input).task == "sweep"
    )
    error_message = "the recovery function runs the redelivery loop every minute and the sweep every 5 minutes, each with its task as input"
  }
  assert {
    condition = (
      aws_cloudwatch_event_rule.schedule["runner-cache"].schedule_expression == "rate(6 hours)" &&
      aws_cloudwatch_event_target.schedule["runner-cache"].arn == aws_lambda_function.fn["recovery"].arn &&
      jsondecode(aws_cloudwatch_event_target.schedule["runner-cache"].input).task == "runner-cache" &&
      aws_lambda_function.fn["recovery"].environment[0].variables["SPOTRUNNER_BUCKET"] == aws_s3_bucket.runner.id
    )
    error_message = "the recovery function fills the runner cache of the runner bucket every 6 hours (task runner-cache)"
  }
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.lambda["recovery"].statement :
      !anytrue([for a in s.actions : startswith(a, "s3:")]) || (
        toset(s.actions) == toset(["s3:GetObject", "s3:PutObject"]) && toset(s.resources) == toset(["${aws_s3_bucket.runner.arn}/runner-cache/*"])
        ) || (
        toset(s.actions) == toset(["s3:ListBucket"]) && toset(s.resources) == toset([aws_s3_bucket.runner.arn])
      )
    ])
    error_message = "recovery reads and writes only runner-cache/* of the runner bucket (and lists it, so a missing key is a 404)"
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.runner_version_behind.metric_name == "runner_version_behind_days" &&
      aws_cloudwatch_metric_alarm.runner_version_behind.threshold == 30 &&
      aws_cloudwatch_metric_alarm.runner_version_behind.dimensions.function == "recovery" &&
      aws_cloudwatch_metric_alarm.log_alarm["runner-cache-refused"].metric_name == "runner_cache_refused"
    )
    error_message = "alarms on a runner version more than 30 days behind and on a refused runner tarball"
  }
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.lambda["recovery"].statement :
      !contains(s.actions, "dynamodb:PutItem") || alltrue([for c in s.condition : c.variable != "dynamodb:LeadingKeys" || toset(c.values) == toset(["state#*"]) || toset(c.values) == toset(["false"])])
    ])
    error_message = "recovery writes only its state documents (state#*) to the ledger"
  }
  assert {
    condition = (
      aws_cloudwatch_event_target.schedule["janitor"].arn == aws_lambda_function.fn["janitor"].arn &&
      aws_cloudwatch_event_target.schedule["dlq-mover"].arn == aws_lambda_function.fn["dlq-mover"].arn
    )
    error_message = "schedules target their functions"
  }
  assert {
    condition     = alltrue([for t in aws_cloudwatch_event_target.stop_runner : t.arn == aws_sqs_queue.stop_events.arn]) && length(aws_cloudwatch_event_target.stop_runner) == 3
    error_message = "SSM command status, spot interruption and EC2 state change go to the stop-events queue"
  }
  assert {
    condition     = alltrue([for t in aws_cloudwatch_event_target.stop_runner : t.dead_letter_config[0].arn == aws_sqs_queue.stop_events_dlq.arn])
    error_message = "events EventBridge cannot deliver go to the stop-events DLQ"
  }
  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.stop_runner["ssm-command"].event_pattern).detail["document-name"] == ["srtest-runner"]
    error_message = "the SSM rule listens to our document only"
  }
  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.stop_runner["instance-state"].event_pattern).detail.state == ["shutting-down", "terminated"]
    error_message = "the EC2 rule listens to shutting-down and terminated"
  }
  assert {
    condition     = length(aws_lambda_permission.schedule) == 5
    error_message = "EventBridge may invoke the scheduled functions"
  }
}

run "stop_events_queue_feeds_stop_runner" {
  assert {
    condition = (
      aws_lambda_event_source_mapping.stop_runner.event_source_arn == aws_sqs_queue.stop_events.arn &&
      aws_lambda_event_source_mapping.stop_runner.function_name == aws_lambda_function.fn["stop-runner"].arn &&
      toset(aws_lambda_event_source_mapping.stop_runner.function_response_types) == toset(["ReportBatchItemFailures"])
    )
    error_message = "the stop-events queue feeds stop-runner with ReportBatchItemFailures"
  }
  assert {
    condition = (
      jsondecode(aws_sqs_queue.stop_events.redrive_policy).deadLetterTargetArn == aws_sqs_queue.stop_events_dlq.arn &&
      jsondecode(aws_sqs_queue.stop_events.redrive_policy).maxReceiveCount >= 10
    )
    error_message = "a failing stop event is retried at least 10 times, then lands in the stop-events DLQ"
  }
  assert {
    condition     = aws_sqs_queue.stop_events.visibility_timeout_seconds >= 6 * aws_lambda_function.fn["stop-runner"].timeout
    error_message = "the stop-events queue's visibility timeout is at least 6x stop-runner's timeout"
  }
  assert {
    condition     = aws_sqs_queue.stop_events_dlq.message_retention_seconds > aws_sqs_queue.stop_events.message_retention_seconds
    error_message = "the stop-events DLQ keeps messages longer than the queue"
  }
  assert {
    condition = alltrue(flatten([for k, doc in data.aws_iam_policy_document.stop_events_queue : [
      for st in doc.statement :
      st.actions == toset(["sqs:SendMessage"]) &&
      anytrue([for p in st.principals : p.type == "Service" && toset(p.identifiers) == toset(["events.amazonaws.com"])]) &&
      anytrue([for c in st.condition : c.test == "ArnEquals" && c.variable == "aws:SourceArn" && toset(c.values) == toset([
        "arn:aws:events:eu-west-1:123456789012:rule/srtest-ssm-command",
        "arn:aws:events:eu-west-1:123456789012:rule/srtest-spot-interruption",
        "arn:aws:events:eu-west-1:123456789012:rule/srtest-instance-state",
      ])])
    ]])) && length(data.aws_iam_policy_document.stop_events_queue) == 2
    error_message = "only the three stop-runner rules may send to the stop-events queue and its DLQ (aws:SourceArn)"
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.other_dlq_not_empty["stop-events"].dimensions.QueueName == aws_sqs_queue.stop_events_dlq.name &&
      aws_cloudwatch_metric_alarm.other_dlq_not_empty["bootstrap"].dimensions.QueueName == aws_sqs_queue.bootstrap_dlq.name
    )
    error_message = "the stop-events and bootstrap DLQs have alarms"
  }
  assert {
    condition = anytrue([
      for st in data.aws_iam_policy_document.lambda["stop-runner"].statement :
      toset(st.actions) == toset(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]) && toset(st.resources) == toset([aws_sqs_queue.stop_events.arn])
    ])
    error_message = "stop-runner's mapping receives and deletes on the stop-events queue only"
  }
  assert {
    condition = anytrue([
      for st in data.aws_iam_policy_document.lambda["dlq-mover"].statement :
      contains(st.actions, "sqs:ReceiveMessage") && toset(st.resources) == toset([aws_sqs_queue.dlq.arn, aws_sqs_queue.bootstrap_dlq.arn, aws_sqs_queue.stop_events_dlq.arn])
      ]) && anytrue([
      for st in data.aws_iam_policy_document.lambda["dlq-mover"].statement :
      toset(st.actions) == toset(["sqs:SendMessage"]) && toset(st.resources) == toset([aws_sqs_queue.bootstrap.arn, aws_sqs_queue.stop_events.arn])
    ])
    error_message = "dlq-mover drains the three DLQs and sends back to the bootstrap and stop-events queues"
  }
}

run "dashboard_and_queue_time_alarms" {
  assert {
    condition     = aws_cloudwatch_dashboard.main[0].dashboard_name == "srtest-spotrunner"
    error_message = "the dashboard is <prefix>-spotrunner"
  }
  assert {
    condition = alltrue([
      for m in ["stage_ms", "queue_time_ms", "jobs_launched", "jobs_failed_to_start", "jobs_dropped", "runners_ended", "capacity_used", "capacity_max", "ApproximateNumberOfMessagesVisible"] :
      strcontains(aws_cloudwatch_dashboard.main[0].dashboard_body, m)
      ]) && alltrue([
      for stat in ["p50", "p95", "p99"] : strcontains(aws_cloudwatch_dashboard.main[0].dashboard_body, "'${stat}'")
      ]) && alltrue([
      for q in [aws_sqs_queue.dlq.name, aws_sqs_queue.bootstrap_dlq.name, aws_sqs_queue.stop_events_dlq.name] :
      strcontains(aws_cloudwatch_dashboard.main[0].dashboard_body, q)
    ])
    error_message = "the dashboard shows stage_ms and queue_time_ms percentiles, launches, failures, the three DLQs and capacity"
  }
  assert {
    condition = (
      toset(keys(aws_cloudwatch_metric_alarm.queue_time)) == toset(["cpu", "od", "arm"]) &&
      alltrue([for name, a in aws_cloudwatch_metric_alarm.queue_time :
        a.namespace == "spotrunner" && a.metric_name == "queue_time_ms" && a.extended_statistic == "p95" &&
        a.threshold == 300000 && a.evaluation_periods == 3 &&
        length(a.dimensions) == 3 && a.dimensions["deployment"] == "srtest" &&
        a.dimensions["function"] == "create-runner" && a.dimensions["pool"] == name
      ])
    )
    error_message = "one queue-time p95 alarm per pool on create-runner's queue_time_ms, default 300000 ms"
  }
}

run "queue_time_alarm_threshold_and_no_dashboard" {
  variables {
    queue_time_alarm_p95_ms             = 60000
    queue_time_alarm_evaluation_periods = 1
    create_dashboard                    = false
  }
  assert {
    condition     = alltrue([for a in aws_cloudwatch_metric_alarm.queue_time : a.threshold == 60000 && a.evaluation_periods == 1]) && length(aws_cloudwatch_dashboard.main) == 0
    error_message = "the queue-time threshold and periods are variables; create_dashboard = false creates none"
  }
}

run "runner_version_latest_and_max_age" {
  command = plan
  variables {
    runner_version = "latest"
    recovery       = { runner_cache = { max_age_days = 14 } }
  }
  assert {
    condition     = jsondecode(output.config_json).runner_version == "latest" && jsondecode(output.config_json).recovery.runner_cache.max_age_days == 14 && aws_cloudwatch_metric_alarm.runner_version_behind.threshold == 14
    error_message = "runner_version = \"latest\" reaches the document; recovery.runner_cache.max_age_days is the document's and the alarm's threshold"
  }
}

run "runner_version_validation" {
  command = plan
  variables {
    runner_version = "v2.330"
  }
  expect_failures = [var.runner_version]
}

run "queue_time_alarm_validation" {
  command = plan
  variables {
    queue_time_alarm_p95_ms = 10
  }
  expect_failures = [var.queue_time_alarm_p95_ms]
}

run "lambda_environment_contract" {
  assert {
    condition = alltrue([for f in aws_lambda_function.fn :
      f.runtime == "provided.al2023" &&
      f.environment[0].variables["SPOTRUNNER_CONFIG_PARAMETER"] == "/srtest/config" &&
      f.environment[0].variables["RUST_LOG"] == "info"
    ])
    error_message = "every Lambda: provided.al2023, SPOTRUNNER_CONFIG_PARAMETER, RUST_LOG"
  }
  assert {
    condition = (
      keys(aws_lambda_function.fn["webhook"].environment[0].variables) == sort(["RUST_LOG", "SPOTRUNNER_CONFIG_PARAMETER", "SPOTRUNNER_CONFIG_SHA256", "SPOTRUNNER_JOBS_QUEUE_URL", "SPOTRUNNER_LEDGER_TABLE", "SPOTRUNNER_WEBHOOK_SECRET_PARAMETERS"]) &&
      keys(aws_lambda_function.fn["create-runner"].environment[0].variables) == sort(["RUST_LOG", "SPOTRUNNER_CONFIG_PARAMETER", "SPOTRUNNER_CONFIG_SHA256", "SPOTRUNNER_JOBS_QUEUE_URL", "SPOTRUNNER_BOOTSTRAP_QUEUE_URL", "SPOTRUNNER_LEDGER_TABLE", "SPOTRUNNER_SSM_DOCUMENT", "SPOTRUNNER_BUCKET", "SPOTRUNNER_BOOTSTRAP_SCRIPT_KEY", "SPOTRUNNER_INSTANCE_ARN_PREFIX"]) &&
      keys(aws_lambda_function.fn["stop-runner"].environment[0].variables) == sort(["RUST_LOG", "SPOTRUNNER_CONFIG_PARAMETER", "SPOTRUNNER_CONFIG_SHA256", "SPOTRUNNER_LEDGER_TABLE", "SPOTRUNNER_SSM_DOCUMENT", "SPOTRUNNER_JOBS_QUEUE_URL"]) &&
      keys(aws_lambda_function.fn["dlq-mover"].environment[0].variables) == sort(["RUST_LOG", "SPOTRUNNER_CONFIG_PARAMETER", "SPOTRUNNER_CONFIG_SHA256", "SPOTRUNNER_DLQ_URL", "SPOTRUNNER_JOBS_QUEUE_URL", "SPOTRUNNER_LEDGER_TABLE", "SPOTRUNNER_BOOTSTRAP_DLQ_URL", "SPOTRUNNER_BOOTSTRAP_QUEUE_URL", "SPOTRUNNER_STOP_EVENTS_DLQ_URL", "SPOTRUNNER_STOP_EVENTS_QUEUE_URL"]) &&
      keys(aws_lambda_function.fn["janitor"].environment[0].variables) == sort(["RUST_LOG", "SPOTRUNNER_CONFIG_PARAMETER", "SPOTRUNNER_CONFIG_SHA256", "SPOTRUNNER_LEDGER_TABLE", "SPOTRUNNER_JOBS_QUEUE_URL"]) &&
      keys(aws_lambda_function.fn["recovery"].environment[0].variables) == sort(["RUST_LOG", "SPOTRUNNER_CONFIG_PARAMETER", "SPOTRUNNER_CONFIG_SHA256", "SPOTRUNNER_LEDGER_TABLE", "SPOTRUNNER_JOBS_QUEUE_URL", "SPOTRUNNER_BUCKET"])
    )
    error_message = "each Lambda gets exactly the environment its code reads"
  }
  assert {
    condition     = aws_lambda_function.fn["webhook"].environment[0].variables["SPOTRUNNER_WEBHOOK_SECRET_PARAMETERS"] == "/srtest/webhook/secret"
    error_message = "the webhook is told its secret parameter's name (one GetParameters at cold start)"
  }
  assert {
    condition     = aws_lambda_function.fn["create-runner"].environment[0].variables["SPOTRUNNER_INSTANCE_ARN_PREFIX"] == "arn:aws:ec2:eu-west-1:123456789012:instance/"
    error_message = "create-runner binds JIT parameters to arn:<partition>:ec2:<region>:<account>:instance/<id>"
  }
  assert {
    condition     = aws_lambda_function.fn["create-runner"].environment[0].variables["SPOTRUNNER_BOOTSTRAP_SCRIPT_KEY"] == "bootstrap.sh" && aws_s3_object.bootstrap.key == "bootstrap.sh"
    error_message = "create-runner's script key is the uploaded bootstrap.sh"
  }
  assert {
    condition = (
      aws_lambda_function.fn["webhook"].environment[0].variables["SPOTRUNNER_CONFIG_SHA256"] == sha256(aws_ssm_parameter.config.value) &&
      alltrue([for f in aws_lambda_function.fn : f.environment[0].variables["SPOTRUNNER_CONFIG_SHA256"] == sha256(aws_ssm_parameter.config.value)])
    )
    error_message = "every Lambda's SPOTRUNNER_CONFIG_SHA256 is sha256 of the configuration document in the parameter (a changed document rolls the functions)"
  }
  assert {
    condition     = aws_lambda_function.fn["create-runner"].reserved_concurrent_executions == 10
    error_message = "reserved concurrency defaults: create-runner 10"
  }
}

run "configuration_document" {
  # tests/fixtures/config.json is this exact document; crates/e2e/tests/terraform_config.rs
  # loads it with the Lambdas' own parser and validation (deny_unknown_fields).
  assert {
    condition     = jsondecode(output.config_json) == jsondecode(file("tests/fixtures/config.json"))
    error_message = "the rendered configuration differs from tests/fixtures/config.json (update both, and run cargo test -p spotrunner-e2e --test terraform_config)"
  }
  assert {
    condition = jsondecode(output.config_json).deployment == "srtest" && jsondecode(output.config_json).github.auth == {
      type        = "app"
      app_id      = 4242
      private_key = "ssm:/srtest/github/app-private-key"
    }
    error_message = "deployment and GitHub App auth by SSM reference"
  }
  assert {
    condition     = jsondecode(output.config_json).webhook.secrets == ["ssm:/srtest/webhook/secret"]
    error_message = "the webhook secret is an SSM reference"
  }
  assert {
    condition     = !strcontains(output.config_json, "test-secret") && !strcontains(output.config_json, "PRIVATE KEY")
    error_message = "the configuration must not contain secret values"
  }
  assert {
    condition     = aws_ssm_parameter.config.name == "/srtest/config" && aws_ssm_parameter.config.value == output.config_json
    error_message = "the configuration is delivered in the SSM parameter the Lambdas are told about"
  }
  assert {
    condition     = aws_apigatewayv2_route.webhook[0].route_key == "POST /webhook" && length(aws_lambda_function_url.webhook) == 0
    error_message = "default endpoint: HTTP API POST /webhook, no Function URL"
  }
}

run "function_url_and_existing_parameters" {
  variables {
    webhook_endpoint                  = "function_url"
    github_auth_type                  = "pat"
    github_pat_parameter              = "/shared/github-pat"
    webhook_secret_parameter          = "shared/webhook"
    webhook_previous_secret_parameter = "/shared/webhook-old"
  }

  assert {
    condition     = length(aws_apigatewayv2_api.webhook) == 0 && length(aws_lambda_function_url.webhook) == 1
    error_message = "function_url mode: a Function URL, no API Gateway"
  }
  assert {
    condition     = length(aws_ssm_parameter.webhook_secret) == 0 && length(aws_ssm_parameter.github_pat) == 0 && length(aws_ssm_parameter.github_app_private_key) == 0
    error_message = "existing parameters are referenced, not created"
  }
  assert {
    condition     = jsondecode(output.config_json).webhook.secrets == ["ssm:/shared/webhook", "ssm:/shared/webhook-old"] && jsondecode(output.config_json).github.auth == { type = "pat", token = "ssm:/shared/github-pat" }
    error_message = "existing parameter names become SSM references (leading / added)"
  }
  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.lambda["webhook"].statement :
      s.sid == "ReadWebhookSecrets" && toset(s.resources) == toset([
        "arn:aws:ssm:eu-west-1:123456789012:parameter/shared/webhook",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/shared/webhook-old",
    ])])
    error_message = "the webhook may read exactly its secrets"
  }
}

run "bad_prefix_is_refused" {
  command = plan
  variables {
    prefix = "Bad_Prefix"
  }
  expect_failures = [var.prefix]
}

run "each_pool_gets_the_ami_of_its_architecture" {
  command = plan
  assert {
    condition     = aws_launch_template.pool["cpu"].image_id == "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    error_message = "an x64 pool without ami gets the x86_64 Amazon Linux 2023 parameter"
  }
  assert {
    condition     = aws_launch_template.pool["arm"].image_id == "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    error_message = "a Graviton pool (m7g, c7g) without ami gets the arm64 Amazon Linux 2023 parameter"
  }
  assert {
    condition     = aws_launch_template.pool["od"].image_id == "ami-0123456789abcdef0"
    error_message = "an explicit ami is used as is"
  }
  assert {
    condition     = { for p in jsondecode(output.config_json).pools : p.name => p.architecture } == { cpu = "x64", od = "x64", arm = "arm64" }
    error_message = "the configuration document carries each pool's architecture (the Lambdas send it as runnerArch)"
  }
}

run "an_explicit_architecture_chooses_the_ami" {
  command = plan
  variables {
    pools = [
      { name = "a1", labels = ["arm64"], instance_types = ["a1.large"], subnets = [], max_runners = 1 },
      { name = "x2", labels = ["arm64", "mem"], instance_types = ["x2gd.large"], subnets = [], max_runners = 1, architecture = "arm64" },
      { name = "g5", labels = ["gpu"], instance_types = ["g5.xlarge", "g4dn.xlarge"], subnets = [], max_runners = 1, architecture = "x64" },
    ]
  }
  assert {
    condition = [for n in ["a1", "x2", "g5"] : aws_launch_template.pool[n].image_id] == [
      "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
      "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
      "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    ]
    error_message = "a1 and x2gd are Graviton, g5/g4dn are x86"
  }
}

run "a_pool_mixing_x64_and_graviton_types_is_refused" {
  command = plan
  variables {
    pools = [{
      name           = "mixed"
      labels         = ["linux"]
      instance_types = ["m7i.large", "m7g.large"]
      subnets        = []
      max_runners    = 1
    }]
  }
  expect_failures = [var.pools]
}

run "an_architecture_contradicting_the_types_is_refused" {
  command = plan
  variables {
    pools = [{
      name           = "liar"
      labels         = ["linux"]
      instance_types = ["m7i.large"]
      architecture   = "arm64"
      subnets        = []
      max_runners    = 1
    }]
  }
  expect_failures = [var.pools]
}

run "on_demand_fallback_only_for_spot_pools" {
  command = plan
  variables {
    pools = [{
      name               = "x"
      labels             = ["linux"]
      ami                = "ami-0123"
      instance_types     = ["m7i.large"]
      subnets            = []
      capacity_type      = "on-demand"
      on_demand_fallback = true
      max_runners        = 1
    }]
  }
  expect_failures = [var.pools]
}

run "missing_webhook_secret_is_refused" {
  command = plan
  variables {
    webhook_secret = null
  }
  expect_failures = [aws_ssm_parameter.webhook_secret]
}

run "ledger_and_bucket" {
  # The key schema and TTL attribute of crates/aws/src/dynamodb.rs create_table.
  assert {
    condition = (
      aws_dynamodb_table.ledger.hash_key == "pk" &&
      one(aws_dynamodb_table.ledger.attribute).name == "pk" &&
      one(aws_dynamodb_table.ledger.attribute).type == "S" &&
      aws_dynamodb_table.ledger.range_key == null &&
      aws_dynamodb_table.ledger.billing_mode == "PAY_PER_REQUEST"
    )
    error_message = "ledger: on-demand, hash key pk (S), no range key"
  }
  assert {
    condition = (
      aws_dynamodb_table.ledger.ttl[0].attribute_name == "expires_at" && aws_dynamodb_table.ledger.ttl[0].enabled &&
      aws_dynamodb_table.ledger.point_in_time_recovery[0].enabled &&
      aws_dynamodb_table.ledger.server_side_encryption[0].enabled
    )
    error_message = "ledger: TTL on expires_at, PITR, SSE"
  }
  assert {
    condition = (
      aws_s3_bucket_versioning.runner.versioning_configuration[0].status == "Enabled" &&
      aws_s3_bucket_public_access_block.runner.block_public_acls && aws_s3_bucket_public_access_block.runner.restrict_public_buckets &&
      length(aws_s3_bucket_policy.runner) == 1 &&
      one(aws_s3_bucket_lifecycle_configuration.runner.rule).noncurrent_version_expiration[0].noncurrent_days == 30
    )
    error_message = "bucket: versioning, public access blocked, TLS-only policy, non-current versions expire"
  }
  assert {
    condition     = aws_ssm_document.runner.name == "srtest-runner" && aws_ssm_document.runner.content == file("../scripts/runner/ssm-document.yaml")
    error_message = "the SSM document is scripts/runner/ssm-document.yaml, named <prefix>-runner"
  }
}

run "app_id_from_a_parameter_written_by_github_app_create" {
  variables {
    github_app_id                    = null
    github_app_private_key           = null
    webhook_secret                   = null
    github_app_id_parameter          = "/srtest/github/app-id"
    github_app_private_key_parameter = "/srtest/github/app-private-key"
    webhook_secret_parameter         = "/srtest/webhook/secret"
  }

  assert {
    condition     = jsondecode(output.config_json).github.auth == { type = "app", app_id = "ssm:/srtest/github/app-id", private_key = "ssm:/srtest/github/app-private-key" }
    error_message = "the App id becomes an ssm: reference the Lambdas resolve"
  }
  assert {
    condition     = length(aws_ssm_parameter.github_app_private_key) == 0 && length(aws_ssm_parameter.webhook_secret) == 0
    error_message = "parameters written by github-app create are referenced, not created"
  }
  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.lambda["create-runner"].statement :
      contains(s.resources, "arn:aws:ssm:eu-west-1:123456789012:parameter/srtest/github/app-id")
    ])
    error_message = "create-runner may read the App id parameter"
  }
  assert {
    condition     = strcontains(output.cli_environment, "export SPOTRUNNER_CONFIG_PARAMETER='/srtest/config'") && strcontains(output.cli_environment, "export SPOTRUNNER_LEDGER_TABLE=")
    error_message = "cli_environment exports the CLI's resource names"
  }
}

run "app_id_twice_is_refused" {
  command = plan
  variables {
    github_app_id_parameter = "/srtest/github/app-id"
  }
  expect_failures = [aws_ssm_parameter.config]
}

# --- issue 26: guardrails over everything a job could touch ---------------------

run "runner_guardrails_cover_the_control_plane" {
  # Every rule, event source mapping, log group and alarm of the deployment is
  # named by an explicit Deny every runner role has (the matrix proves the
  # effect with AdministratorAccess attached, over the roles as deployed).
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails_watch.statement :
      s.effect == "Deny" && s.sid == "DenyOurRules" && toset(s.actions) == toset(["events:*"]) &&
      toset(s.resources) == toset(concat([for r in aws_cloudwatch_event_rule.stop_runner : r.arn], [for r in aws_cloudwatch_event_rule.schedule : r.arn]))
    ])
    error_message = "runner guardrails: every EventBridge rule of the deployment (events:*)"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails_watch.statement :
      s.effect == "Deny" && s.sid == "DenyOurEventSourceMappings" && length(s.resources) == 3 &&
      alltrue([for r in s.resources : startswith(r, "arn:aws:lambda:eu-west-1:123456789012:event-source-mapping:")])
    ])
    error_message = "runner guardrails: the three event source mappings (lambda:*)"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails_watch.statement :
      s.effect == "Deny" && s.sid == "DenyOurWebhookApi" &&
      toset(s.resources) == toset(["arn:aws:apigateway:eu-west-1::/apis/abc123", "arn:aws:apigateway:eu-west-1::/apis/abc123/*"])
    ])
    error_message = "runner guardrails: the webhook API and everything under it (apigateway:*)"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails_watch.statement :
      s.effect == "Deny" && s.sid == "DenyOurLogGroups" && alltrue([
        for g in concat(values(aws_cloudwatch_log_group.lambda), aws_cloudwatch_log_group.api) : contains(s.resources, g.arn) && contains(s.resources, "${g.arn}:*")
      ])
    ])
    error_message = "runner guardrails: every log group of the deployment and its streams (logs:*)"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails_watch.statement :
      s.effect == "Deny" && s.sid == "DenyOurAlarms" && alltrue([
        for a in concat(
          [aws_cloudwatch_metric_alarm.dlq_not_empty, aws_cloudwatch_metric_alarm.oldest_job, aws_cloudwatch_metric_alarm.runner_version_behind, aws_cloudwatch_metric_alarm.webhook_bad_signatures],
          values(aws_cloudwatch_metric_alarm.other_dlq_not_empty), values(aws_cloudwatch_metric_alarm.lambda_errors),
          values(aws_cloudwatch_metric_alarm.queue_time), values(aws_cloudwatch_metric_alarm.log_alarm),
        ) : contains(s.resources, a.arn)
      ]) && contains(s.resources, aws_cloudwatch_dashboard.main[0].dashboard_arn)
    ])
    error_message = "runner guardrails: every alarm (and the dashboard) of the deployment (cloudwatch:*)"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails_infra.statement :
      s.effect == "Deny" && s.sid == "DenyRunnerVolumesSnapshotsAndInterfaces" &&
      toset(s.resources) == toset([
        "arn:aws:ec2:eu-west-1:123456789012:volume/*",
        "arn:aws:ec2:eu-west-1:123456789012:network-interface/*",
        "arn:aws:ec2:eu-west-1::snapshot/*",
      ]) &&
      anytrue([for c in s.condition : c.variable == "aws:ResourceTag/spotrunner:deployment" && toset(c.values) == toset(["srtest"])])
    ])
    error_message = "runner guardrails: the runners' volumes, snapshots and network interfaces (by the deployment tag)"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails_infra.statement :
      s.effect == "Deny" && s.sid == "DenyPoolSecurityGroups" &&
      toset(s.resources) == toset(["arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0mock"])
    ])
    error_message = "runner guardrails: the pools' security groups"
  }
  # Every runner role has the three shared guardrail policies.
  assert {
    condition     = toset([for a in aws_iam_role_policy_attachment.runner_guardrails : "${a.role}"]) == toset([for r in aws_iam_role.runner : r.name]) && length(aws_iam_role_policy_attachment.runner_guardrails) == 3 * length(var.pools)
    error_message = "every pool's runner role has the plane, infra and watch guardrails attached"
  }
  # No custom AMI parameter here: no statement for one.
  assert {
    condition     = !anytrue([for s in data.aws_iam_policy_document.runner_guardrails_infra.statement : s.sid == "DenyAmiParameterWrites"])
    error_message = "no custom AMI parameter, no DenyAmiParameterWrites"
  }
}

run "custom_ami_parameters_are_read_only_for_runners" {
  variables {
    pools = [
      { name = "a", labels = ["a"], instance_types = ["m7i.large"], subnets = ["subnet-0abc"], max_runners = 1, ami = "resolve:ssm:/team/images/runner:3" },
      { name = "b", labels = ["b"], instance_types = ["m7i.large"], subnets = ["subnet-0abc"], max_runners = 1, ami = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64" },
    ]
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails_infra.statement :
      s.sid == "DenyAmiParameterWrites" && toset(s.resources) == toset(["arn:aws:ssm:eu-west-1:123456789012:parameter/team/images/runner"]) &&
      try(contains(s.not_actions, "ssm:GetParameter") && !contains(s.not_actions, "ssm:PutParameter"), false)
    ])
    error_message = "a custom resolve:ssm: AMI parameter (version suffix dropped) is denied everything but reads; /aws/service/ is AWS's"
  }
}

run "each_pool_has_its_own_role_and_security_group" {
  assert {
    condition     = toset([for r in aws_iam_role.runner : r.name]) == toset(["srtest-runner-cpu", "srtest-runner-od", "srtest-runner-arm"])
    error_message = "one runner role per pool: <prefix>-runner-<pool>"
  }
  assert {
    condition     = alltrue([for p, lt in aws_launch_template.pool : lt.iam_instance_profile[0].arn == aws_iam_instance_profile.runner[p].arn])
    error_message = "each pool's launch template uses its own pool's instance profile"
  }
  # A startup script is readable by its own pool's role only.
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner["cpu"].statement :
      s.sid == "ReadRunnerBucket" && contains(s.resources, "arn:aws:s3:::srtest-runner-123456789012-eu-west-1/startup/cpu.sh")
    ])
    error_message = "pool cpu's role reads startup/cpu.sh"
  }
  assert {
    condition = alltrue(flatten([
      for p, doc in data.aws_iam_policy_document.runner : [
        for s in doc.statement : [
          for r in s.resources : !strcontains(r, "/startup/") || r == "arn:aws:s3:::srtest-runner-123456789012-eu-west-1/startup/${p}.sh"
        ]
      ]
    ]))
    error_message = "no pool's role is allowed another pool's startup script (nor startup/*)"
  }
  assert {
    condition = alltrue([
      for p, doc in data.aws_iam_policy_document.runner_guardrails : anytrue([
        for s in doc.statement : s.sid == "DenyOtherPoolsStartupScripts" && toset(s.resources) == toset([
          for q in ["cpu", "od", "arm"] : "arn:aws:s3:::srtest-runner-123456789012-eu-west-1/startup/${q}.sh" if q != p
        ])
      ])
    ])
    error_message = "each pool's guardrails deny the other pools' startup scripts"
  }
  # A security group per pool: no ingress, egress only, in the pool's VPC.
  assert {
    condition     = length(aws_security_group.pool) == 3 && alltrue([for sg in aws_security_group.pool : length(sg.ingress) == 0 && length(sg.egress) == 1 && sg.vpc_id == "vpc-0mock"])
    error_message = "each pool without security groups gets one of the module's: no ingress, one egress rule, in its subnets' VPC"
  }
  assert {
    condition     = alltrue([for p, lt in aws_launch_template.pool : toset(lt.network_interfaces[0].security_groups) == toset([aws_security_group.pool[p].id])])
    error_message = "each pool's launch template uses its own security group"
  }
}

run "a_pool_names_its_security_groups_and_extra_policies" {
  variables {
    runner_extra_policy_arns = ["arn:aws:iam::123456789012:policy/all-jobs"]
    pools = [
      { name = "a", labels = ["a"], instance_types = ["m7i.large"], subnets = ["subnet-0abc"], max_runners = 1, security_group_ids = ["sg-0named"], extra_policy_arns = ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"] },
      { name = "b", labels = ["b"], instance_types = ["m7i.large"], subnets = ["subnet-0abc"], max_runners = 1 },
    ]
  }
  assert {
    condition     = keys(aws_security_group.pool) == ["b"] && toset(aws_launch_template.pool["a"].network_interfaces[0].security_groups) == toset(["sg-0named"])
    error_message = "a pool naming its security groups gets none of the module's"
  }
  assert {
    condition = toset([for a in aws_iam_role_policy_attachment.runner_extra : "${a.role} ${a.policy_arn}"]) == toset([
      "srtest-runner-a arn:aws:iam::123456789012:policy/all-jobs",
      "srtest-runner-a arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
      "srtest-runner-b arn:aws:iam::123456789012:policy/all-jobs",
    ])
    error_message = "a pool's extra policies go to its own role only; runner_extra_policy_arns to every pool's"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.runner_guardrails_infra.statement :
      s.sid == "DenyPoolSecurityGroups" && contains(s.resources, "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0named")
    ])
    error_message = "a pool's named security group is guarded too"
  }
}

run "too_many_extra_policies_are_refused" {
  command = plan
  variables {
    runner_extra_policy_arns = [for i in range(8) : "arn:aws:iam::123456789012:policy/p${i}"]
  }
  expect_failures = [var.pools]
}

run "credential_binding_defaults_to_vpc_endpoints" {
  # AWS's pattern: through a VPC endpoint, the instance's VPC and address only.
  assert {
    condition = alltrue([
      for p, doc in data.aws_iam_policy_document.runner_guardrails : length([
        for s in doc.statement : s if s.effect == "Deny" && toset(s.actions) == toset(["*"]) && (
          (s.sid == "DenyCredentialsFromAnotherVpc" && anytrue([for c in s.condition : c.test == "StringNotEquals" && c.variable == "aws:ec2InstanceSourceVPC" && toset(c.values) == toset(["$${aws:SourceVpc}"])])) ||
          (s.sid == "DenyCredentialsFromAnotherAddress" && anytrue([for c in s.condition : c.test == "StringNotEquals" && c.variable == "aws:ec2InstanceSourcePrivateIPv4" && toset(c.values) == toset(["$${aws:VpcSourceIp}"])]))
        ) && anytrue([for c in s.condition : c.test == "BoolIfExists" && c.variable == "aws:ViaAWSService" && toset(c.values) == toset(["false"])])
      ]) == 2
    ])
    error_message = "every pool's credentials are bound to the instance's VPC and private address (default: endpoints)"
  }
  assert {
    condition     = !anytrue(flatten([for p, doc in data.aws_iam_policy_document.runner_guardrails : [for s in doc.statement : s.sid == "DenyCredentialsOutsideVpcEndpoints"]]))
    error_message = "the default binding leaves calls over the internet alone (no VPC endpoint needed)"
  }
}

run "credential_binding_strict_and_off" {
  variables {
    runner_credential_binding = "strict"
    pools = [
      { name = "a", labels = ["a"], instance_types = ["m7i.large"], subnets = ["subnet-0abc"], max_runners = 1 },
      { name = "b", labels = ["b"], instance_types = ["m7i.large"], subnets = ["subnet-0abc"], max_runners = 1, credential_binding = "off" },
    ]
  }
  assert {
    condition     = anytrue([for s in data.aws_iam_policy_document.runner_guardrails["a"].statement : s.sid == "DenyCredentialsOutsideVpcEndpoints" && anytrue([for c in s.condition : c.test == "Null" && c.variable == "aws:SourceVpc" && toset(c.values) == toset(["true"])])])
    error_message = "strict: no call outside a VPC endpoint"
  }
  assert {
    condition     = !anytrue([for s in data.aws_iam_policy_document.runner_guardrails["b"].statement : startswith(coalesce(s.sid, "-"), "DenyCredentials")])
    error_message = "a pool's credential_binding = off overrides the default"
  }
  assert {
    condition     = output.runner_roles["a"].credential_binding == "strict" && output.runner_roles["b"].credential_binding == "off"
    error_message = "runner_roles reports each pool's binding"
  }
}

run "bad_credential_binding_is_refused" {
  command = plan
  variables {
    runner_credential_binding = "sometimes"
  }
  expect_failures = [var.runner_credential_binding]
}

# --- issue 26: the webhook cannot be made to cost money ---------------------------

run "webhook_and_stop_runner_are_reserved_and_the_api_throttled" {
  assert {
    condition     = aws_lambda_function.fn["webhook"].reserved_concurrent_executions == 20 && aws_lambda_function.fn["stop-runner"].reserved_concurrent_executions == 5
    error_message = "reserved concurrency defaults: webhook 20, stop-runner 5"
  }
  assert {
    condition     = aws_lambda_event_source_mapping.stop_runner.scaling_config[0].maximum_concurrency == 5
    error_message = "stop-runner's mapping stays below its reserved concurrency"
  }
  assert {
    condition     = aws_apigatewayv2_stage.webhook[0].default_route_settings[0].throttling_rate_limit == 50 && aws_apigatewayv2_stage.webhook[0].default_route_settings[0].throttling_burst_limit == 100
    error_message = "the webhook API is throttled by default (50/s, burst 100)"
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.webhook_bad_signatures.metric_name == "webhook_refused" &&
      aws_cloudwatch_metric_alarm.webhook_bad_signatures.namespace == "spotrunner" &&
      aws_cloudwatch_metric_alarm.webhook_bad_signatures.dimensions == tomap({ deployment = "srtest", function = "webhook", reason = "bad_signature" }) &&
      aws_cloudwatch_metric_alarm.webhook_bad_signatures.threshold == 20
    )
    error_message = "a security alarm on a burst of 401s (webhook_refused, reason bad_signature)"
  }
}

run "unthrottled_api_is_refused" {
  command = plan
  variables {
    api_throttling = { rate_limit = 0 }
  }
  expect_failures = [var.api_throttling]
}

run "short_webhook_secret_is_refused" {
  command = plan
  variables {
    webhook_secret = "0123456789abcdef0123456789abcde" # 31 characters
  }
  expect_failures = [var.webhook_secret]
}

run "blank_webhook_secret_is_refused" {
  command = plan
  variables {
    webhook_secret = "                                        "
  }
  expect_failures = [var.webhook_secret]
}

run "stop_runner_reserved_below_two_is_refused" {
  command = plan
  variables {
    reserved_concurrency = { stop_runner = 1 }
  }
  expect_failures = [var.reserved_concurrency]
}

# --- who gets a runner (issue 26 items 1, 4, 10) ---

run "public_repositories_and_root_are_off_unless_chosen" {
  command = plan
  variables {
    pools = [
      { name = "priv", labels = ["linux"], instance_types = ["m7i.large"], subnets = [], max_runners = 1 },
      { name = "oss", labels = ["oss"], instance_types = ["m7i.large"], subnets = [], max_runners = 1, allow_public_repositories = true, runner_user = "root" },
    ]
  }
  assert {
    condition     = jsondecode(output.config_json).allow_public_repositories == false
    error_message = "the document serves no public repository by default"
  }
  assert {
    condition     = !contains(keys(jsondecode(output.config_json).pools[0]), "allow_public_repositories") && jsondecode(output.config_json).pools[1].allow_public_repositories == true
    error_message = "a pool's allow_public_repositories reaches the document only when set"
  }
  assert {
    condition     = [for p in jsondecode(output.config_json).pools : p.runner_user] == ["runner", "root"]
    error_message = "jobs run as runner by default, root only by choice"
  }
}

run "an_empty_owner_list_is_refused" {
  command = plan
  variables {
    allowed_owners = []
  }
  expect_failures = [var.allowed_owners]
}

run "any_owner_must_stand_alone" {
  command = plan
  variables {
    allowed_owners = ["*", "my-org"]
  }
  expect_failures = [var.allowed_owners]
}

run "named_repositories_bound_the_owners" {
  command = plan
  variables {
    allowed_owners       = []
    allowed_repositories = ["my-org/app"]
  }
  assert {
    condition     = jsondecode(output.config_json).allowed_repositories == ["my-org/app"]
    error_message = "allowed_repositories alone is accepted"
  }
}

run "a_bad_runner_user_is_refused" {
  command = plan
  variables {
    pools = [{ name = "x", labels = ["x"], instance_types = ["m7i.large"], subnets = [], max_runners = 1, runner_user = "Bad User" }]
  }
  expect_failures = [var.pools]
}

run "an_unverified_runner_needs_a_pinned_version" {
  command = plan
  variables {
    runner_version = "latest"
    pools          = [{ name = "x", labels = ["x"], instance_types = ["m7i.large"], subnets = [], max_runners = 1, allow_unverified_runner = true }]
  }
  expect_failures = [var.pools]
}
