# ---------------------------------------------------------------------------
# Identity of the deployment
# ---------------------------------------------------------------------------

variable "prefix" {
  description = "Deployment name: prefix of every resource name, the `spotrunner:deployment` tag IAM conditions check, and the `deployment` field of the configuration document. a-z, 0-9 and '-', starting with a letter, at most 20 characters (runner names must fit GitHub's 64)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.prefix))
    error_message = "prefix must start with a-z, hold only a-z, 0-9 and '-', and be at most 20 characters."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags (the provider's default_tags work too)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Lambdas
# ---------------------------------------------------------------------------

variable "lambda_zip_dir" {
  description = "Directory holding `<function>/bootstrap.zip` for webhook, create-runner, stop-runner, dlq-mover, janitor and recovery, as `scripts/package-lambdas.sh` writes them (default output: target/lambda)."
  type        = string

  validation {
    condition     = length(trimspace(var.lambda_zip_dir)) > 0
    error_message = "lambda_zip_dir must name a directory."
  }
}

variable "lambda_architecture" {
  description = "Instruction set the zips were built for: x86_64 (default) or arm64 (`scripts/package-lambdas.sh --arm64`)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "log_level" {
  description = "RUST_LOG for every Lambda: one level (error, warn, info, debug, trace)."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["error", "warn", "info", "debug", "trace"], var.log_level)
    error_message = "log_level must be one of error, warn, info, debug, trace."
  }
}

variable "log_retention_days" {
  description = "Retention of the Lambdas' and the API's CloudWatch log groups, in days."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions per Lambda; -1 leaves a function unreserved. The webhook's (20) and stop-runner's (5) cap what a flood of requests or events can cost and keep the account's other functions' concurrency theirs (the webhook answers a throttled request 429; GitHub's redelivery loop asks for it again). create-runner's bounds the rate of GitHub JIT calls and CreateFleet calls (its two SQS mappings get half each as maximum concurrency, so SQS never throttles it); stop-runner's mapping gets its reserved concurrency as maximum; janitor, dlq-mover and recovery run one at a time. Lambda keeps 100 of the account's quota unreserved: accounts with a low quota may need -1 everywhere."
  type = object({
    webhook       = optional(number, 20)
    create_runner = optional(number, 10)
    stop_runner   = optional(number, 5)
    dlq_mover     = optional(number, 1)
    janitor       = optional(number, 1)
    recovery      = optional(number, 1)
  })
  default = {}

  validation {
    condition     = alltrue([for v in values(var.reserved_concurrency) : v == -1 || (v >= 0 && floor(v) == v)])
    error_message = "reserved_concurrency values must be -1 (unreserved) or a whole number >= 0."
  }
  validation {
    condition     = contains([-1, 0], var.reserved_concurrency.stop_runner) || var.reserved_concurrency.stop_runner >= 2
    error_message = "reserved_concurrency.stop_runner must be -1, 0 (paused) or at least 2 (its SQS mapping needs a maximum concurrency of at least 2)."
  }
  validation {
    condition     = contains([-1, 0], var.reserved_concurrency.create_runner) || var.reserved_concurrency.create_runner >= 4
    error_message = "reserved_concurrency.create_runner must be -1, 0 (paused) or at least 4 (each of its two SQS mappings needs a maximum concurrency of at least 2)."
  }
}

variable "create_runner_batch_size" {
  description = "SQS messages per create-runner invocation (jobs and bootstrap queues)."
  type        = number
  default     = 5

  validation {
    condition     = var.create_runner_batch_size >= 1 && var.create_runner_batch_size <= 10
    error_message = "create_runner_batch_size must be between 1 and 10."
  }
}

variable "dlq_mover_schedule" {
  description = "EventBridge schedule expression for dlq-mover (moves dead-lettered jobs back to the jobs queue)."
  type        = string
  default     = "rate(1 hour)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.dlq_mover_schedule))
    error_message = "dlq_mover_schedule must be a rate(...) or cron(...) expression."
  }
}

variable "janitor_schedule" {
  description = "EventBridge schedule expression for the janitor (reconciles EC2, ledger and GitHub)."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.janitor_schedule))
    error_message = "janitor_schedule must be a rate(...) or cron(...) expression."
  }
}

variable "recovery" {
  description = "The configuration document's `recovery` section as an object: `redelivery` { enabled, max_calls, max_requests, lookback_secs, hook_id, hook_org, hook_repository } and `sweep` { enabled, max_calls, min_age_secs, min_rate_remaining_percent } (README \"No queued job lost\"), `runner_cache` { enabled, interval_secs, max_age_days } (README \"Runner version\"; max_age_days is also the runner-version-behind alarm's threshold). Empty: both on with their defaults. With github_auth_type = \"pat\" the redelivery loop needs hook_id with hook_org or hook_repository. The Lambdas validate it at cold start and name a bad field."
  type        = any
  default     = {}
}

variable "redelivery_schedule" {
  description = "EventBridge schedule expression for the redelivery loop (recovery Lambda, task redelivery): failed webhook deliveries are asked for again. GitHub never redelivers by itself."
  type        = string
  default     = "rate(1 minute)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.redelivery_schedule))
    error_message = "redelivery_schedule must be a rate(...) or cron(...) expression."
  }
}

variable "runner_cache_schedule" {
  description = "EventBridge schedule expression for the runner cache (recovery Lambda, task runner-cache): the runner tarballs of runner_version (pinned or \"latest\") are downloaded, checked against the SHA-256 GitHub publishes and stored in the runner bucket's runner-cache/ with a .sha256 sidecar. Set recovery.runner_cache.enabled = false in the configuration to switch it off."
  type        = string
  default     = "rate(6 hours)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.runner_cache_schedule))
    error_message = "runner_cache_schedule must be a rate(...) or cron(...) expression."
  }
}

variable "sweep_schedule" {
  description = "EventBridge schedule expression for the missed-job sweep (recovery Lambda, task sweep): queued jobs the webhook never brought are enqueued. Set recovery.sweep.enabled = false in the configuration to switch it off."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.sweep_schedule))
    error_message = "sweep_schedule must be a rate(...) or cron(...) expression."
  }
}

variable "janitor_dry_run" {
  description = "Janitor only logs what it would do (SPOTRUNNER_DRY_RUN=true)."
  type        = bool
  default     = false
}

variable "dlq_max_per_run" {
  description = "SPOTRUNNER_DLQ_MAX_PER_RUN for dlq-mover; null keeps the function's default."
  type        = number
  default     = null

  validation {
    condition     = var.dlq_max_per_run == null || try(var.dlq_max_per_run >= 1, false)
    error_message = "dlq_max_per_run must be at least 1."
  }
}

variable "dlq_rate_per_second" {
  description = "SPOTRUNNER_DLQ_RATE_PER_SECOND for dlq-mover; null keeps the function's default."
  type        = number
  default     = null

  validation {
    condition     = var.dlq_rate_per_second == null || try(var.dlq_rate_per_second > 0, false)
    error_message = "dlq_rate_per_second must be greater than 0."
  }
}

# ---------------------------------------------------------------------------
# Webhook endpoint
# ---------------------------------------------------------------------------

variable "webhook_endpoint" {
  description = "How GitHub reaches the webhook Lambda: `api_gateway` (HTTP API, POST /webhook; default) or `function_url` (a Lambda Function URL, no API Gateway)."
  type        = string
  default     = "api_gateway"

  validation {
    condition     = contains(["api_gateway", "function_url"], var.webhook_endpoint)
    error_message = "webhook_endpoint must be api_gateway or function_url."
  }
}

variable "api_throttling" {
  description = "HTTP API default-route throttling (requests per second and burst); requests above it are answered 429 before they reach (and cost) the webhook Lambda. A Function URL has no throttle: reserved_concurrency.webhook is its only cap."
  type = object({
    rate_limit  = optional(number, 50)
    burst_limit = optional(number, 100)
  })
  default = {}

  validation {
    condition     = var.api_throttling.rate_limit >= 1 && var.api_throttling.burst_limit >= 1 && floor(var.api_throttling.burst_limit) == var.api_throttling.burst_limit
    error_message = "api_throttling: rate_limit must be at least 1 request per second and burst_limit a whole number of at least 1 (an unthrottled API lets anyone run up the bill)."
  }
}

variable "webhook_bad_signature_alarm_threshold" {
  description = "Security alarm <prefix>-webhook-bad-signatures: more than this many requests refused for a bad signature (401, the webhook's EMF metric webhook_refused with reason bad_signature) in 5 minutes. A burst means someone is guessing, or GitHub holds another secret."
  type        = number
  default     = 20

  validation {
    condition     = var.webhook_bad_signature_alarm_threshold >= 0 && floor(var.webhook_bad_signature_alarm_threshold) == var.webhook_bad_signature_alarm_threshold
    error_message = "webhook_bad_signature_alarm_threshold must be a whole number >= 0."
  }
}

# ---------------------------------------------------------------------------
# GitHub and secrets
# ---------------------------------------------------------------------------

variable "github_api_url" {
  description = "GitHub REST API base: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server."
  type        = string
  default     = "https://api.github.com"

  validation {
    condition     = can(regex("^https?://", var.github_api_url))
    error_message = "github_api_url must be an http(s) URL."
  }
}

variable "github_auth_type" {
  description = "How spotrunner authenticates to GitHub: `app` (a GitHub App; preferred) or `pat` (a personal access token)."
  type        = string
  default     = "app"

  validation {
    condition     = contains(["app", "pat"], var.github_auth_type)
    error_message = "github_auth_type must be app or pat."
  }
}

variable "github_app_id" {
  description = "GitHub App id (github_auth_type = app). Give this or github_app_id_parameter."
  type        = number
  default     = null

  validation {
    condition     = var.github_app_id == null || try(var.github_app_id >= 1 && floor(var.github_app_id) == var.github_app_id, false)
    error_message = "github_app_id must be a positive whole number."
  }
}

variable "github_app_id_parameter" {
  description = "Name of an SSM parameter holding the GitHub App's id (instead of github_app_id). `spotrunner github-app create --ssm-prefix /<prefix>` writes /<prefix>/github/app-id; the Lambdas read it at cold start, so the App can be created after terraform apply."
  type        = string
  default     = null

  validation {
    condition     = var.github_app_id_parameter == null || can(regex("^/?[A-Za-z0-9_./-]+$", var.github_app_id_parameter))
    error_message = "github_app_id_parameter must be an SSM parameter name."
  }
}

variable "github_app_private_key" {
  description = "The GitHub App's private key (PEM). Stored as the SecureString parameter /<prefix>/github/app-private-key. Give this or github_app_private_key_parameter."
  type        = string
  default     = null
  sensitive   = true
}

variable "github_app_private_key_parameter" {
  description = "Name of an existing SSM SecureString parameter holding the GitHub App's private key (instead of github_app_private_key)."
  type        = string
  default     = null

  validation {
    condition     = var.github_app_private_key_parameter == null || can(regex("^/?[A-Za-z0-9_./-]+$", var.github_app_private_key_parameter))
    error_message = "github_app_private_key_parameter must be an SSM parameter name."
  }
}

variable "github_pat" {
  description = "A GitHub personal access token (github_auth_type = pat). Stored as the SecureString parameter /<prefix>/github/pat. Give this or github_pat_parameter."
  type        = string
  default     = null
  sensitive   = true
}

variable "github_pat_parameter" {
  description = "Name of an existing SSM SecureString parameter holding a GitHub PAT (instead of github_pat)."
  type        = string
  default     = null

  validation {
    condition     = var.github_pat_parameter == null || can(regex("^/?[A-Za-z0-9_./-]+$", var.github_pat_parameter))
    error_message = "github_pat_parameter must be an SSM parameter name."
  }
}

variable "webhook_secret" {
  description = "The GitHub webhook secret, at least 32 characters (e.g. `openssl rand -hex 32`). Stored as the SecureString parameter /<prefix>/webhook/secret. Give this or webhook_secret_parameter."
  type        = string
  default     = null
  sensitive   = true

  validation {
    # A short secret can be guessed offline from a single signed delivery.
    condition     = var.webhook_secret == null || try(length(trimspace(var.webhook_secret)) >= 32, false)
    error_message = "webhook_secret must be at least 32 characters (not blank): generate one with `openssl rand -hex 32`."
  }
}

variable "webhook_secret_parameter" {
  description = "Name of an existing SSM SecureString parameter holding the webhook secret (instead of webhook_secret)."
  type        = string
  default     = null

  validation {
    condition     = var.webhook_secret_parameter == null || can(regex("^/?[A-Za-z0-9_./-]+$", var.webhook_secret_parameter))
    error_message = "webhook_secret_parameter must be an SSM parameter name."
  }
}

variable "webhook_previous_secret_parameter" {
  description = "During a secret rotation: name of an SSM SecureString parameter holding the previous webhook secret, accepted as well. null outside rotations."
  type        = string
  default     = null

  validation {
    condition     = var.webhook_previous_secret_parameter == null || can(regex("^/?[A-Za-z0-9_./-]+$", var.webhook_previous_secret_parameter))
    error_message = "webhook_previous_secret_parameter must be an SSM parameter name."
  }
}

variable "parameter_kms_key_arn" {
  description = "ARN of a customer-managed KMS key (key/..., not an alias) for the SecureString parameters this module creates and for create-runner's JIT parameters (SPOTRUNNER_PARAMETER_KMS_KEY); null uses the account's aws/ssm key. Each Lambda may then kms:Decrypt only the parameters it reads, create-runner kms:Encrypt/GenerateDataKey only JIT parameters, the runner role kms:Decrypt only JIT parameters (all by kms:EncryptionContext:PARAMETER_ARN, through SSM only). The key policy must let the account's IAM policies grant its use (the default key policy does)."
  type        = string
  default     = null

  validation {
    condition     = var.parameter_kms_key_arn == null || can(regex("^arn:[a-z-]+:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.parameter_kms_key_arn))
    error_message = "parameter_kms_key_arn must be a key ARN (arn:<partition>:kms:<region>:<account>:key/<id>); IAM authorises KMS calls on the key ARN, not on an alias."
  }
}

# ---------------------------------------------------------------------------
# Configuration document (globals)
# ---------------------------------------------------------------------------

variable "allowed_owners" {
  description = "Organisations / users whose jobs this deployment serves; [\"*\"]: any owner the credentials reach, on purpose. Empty is refused unless allowed_repositories names the repositories."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.allowed_owners) > 0 || length(var.allowed_repositories) > 0
    error_message = "allowed_owners is empty, which would serve every owner the credentials reach: list the organisations/users (or the repositories in allowed_repositories), or say [\"*\"] to serve any owner on purpose."
  }
  validation {
    condition     = !contains(var.allowed_owners, "*") || length(var.allowed_owners) == 1
    error_message = "allowed_owners: \"*\" (any owner) must stand alone."
  }
}

variable "allow_public_repositories" {
  description = "Serve jobs of public repositories (anyone who can open a pull request there could run code on the runners). A pool's allow_public_repositories overrides it."
  type        = bool
  default     = false
}

variable "allowed_repositories" {
  description = "`owner/name` repositories served; empty means any repository of an allowed owner."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.allowed_repositories : can(regex("^[^/]+/[^/]+$", r))])
    error_message = "allowed_repositories entries must be owner/name."
  }
}

variable "max_total_weight" {
  description = "Global weighted quota: the sum of `weight` over live runners of all pools. null: no global quota."
  type        = number
  default     = null

  validation {
    condition     = var.max_total_weight == null || try(var.max_total_weight >= 1, false)
    error_message = "max_total_weight must be at least 1 when set."
  }
}

variable "runner_version" {
  description = "Version of the GitHub Actions runner the VMs run: pinned (2.329.0) or \"latest\" (the newest release the runner-cache task verified). Tarballs are cached, with their verified SHA-256, in the bucket under runner-cache/."
  type        = string
  default     = "2.329.0"

  validation {
    condition     = var.runner_version == "latest" || can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.runner_version))
    error_message = "runner_version must be \"latest\" or look like 2.329.0."
  }
}

variable "config_parameter_tier" {
  description = "Tier of the SSM parameter holding the configuration document: Standard (4 KB), Advanced (8 KB, charged) or Intelligent-Tiering (Standard until it needs more)."
  type        = string
  default     = "Intelligent-Tiering"

  validation {
    condition     = contains(["Standard", "Advanced", "Intelligent-Tiering"], var.config_parameter_tier)
    error_message = "config_parameter_tier must be Standard, Advanced or Intelligent-Tiering."
  }
}

# ---------------------------------------------------------------------------
# Pools
# ---------------------------------------------------------------------------

variable "pools" {
  description = <<-EOT
    Runner pools ("runner templates"). Each becomes one launch template
    (<prefix>-<name>) and one entry of the configuration document.
    - name: <= 16 characters, A-Z a-z 0-9 . _ -
    - labels: the labels it serves (self-hosted is implicit)
    - ami: an AMI id (ami-...) or `resolve:ssm:<public parameter path>`; null: the
      latest Amazon Linux 2023 of the pool's architecture
    - architecture: x64 or arm64; null: derived from instance_types (Graviton
      families such as m7g, c7gn, t4g are arm64), which must not mix the two
    - instance_types, subnets: CreateFleet overrides (instance types x subnets)
    - security_group_ids: for the instances' network interface; empty: a
      security group of the module (<prefix>-runner-<pool>, egress only, no
      ingress: runners cannot reach each other)
    - extra_policy_arns: managed policies for this pool's runner role only
      (<prefix>-runner-<pool>; runner_extra_policy_arns go to every pool's)
    - credential_binding: off | endpoints | strict; null: runner_credential_binding
    - capacity_type: spot (default) or on-demand; on_demand_fallback for spot pools
    - max_runners, weight, runner_group, scope (org | repo)
    - boot_timeout_secs, idle_timeout_secs, max_run_time_secs (<= 172800)
    - startup_script: shell run before the runner (uploaded to s3://bucket/startup/<name>.sh)
    - check_job_queued: ask GitHub before launching
    - allow_public_repositories: serve public repositories' jobs (null: the
      global allow_public_repositories, default false)
    - runner_user: the Linux user jobs run as, with passwordless sudo
      ("runner"); "root" runs them as root
    - allow_unverified_runner: install the runner without a verified SHA-256
      (only with a pinned runner_version)
    - root_volume_size_gb, root_volume_type, root_device_name
    - spot: re-runs of jobs a spot interruption killed (reruns, default 1 per
      job, 0: never; the re-run launches on-demand) and the spot breaker
      (breaker_interruptions in breaker_window_secs switch the pool off spot
      for breaker_cooldown_secs: on-demand if on_demand_fallback, else wait)
    - hot: idle runners kept booted and registered before any job (count,
      owner (org) or repository (repo scope), max_idle_secs, schedule of UTC
      days/hours); they count against max_runners; the janitor's pass tops
      the pool up and each job's delivery refills it
    - sizing: per-job sizing from `spotrunner/...` labels (README "Sizing a job
      from its labels"): cpu = [min, max] vCPUs, optional ram_gib = [min, max],
      families, base_cpu; the document's sizing.disk_gib is root_volume_size_gb.
      null (default): the pool refuses sizing labels
  EOT
  type = list(object({
    name               = string
    labels             = list(string)
    ami                = optional(string)
    architecture       = optional(string)
    instance_types     = list(string)
    subnets            = list(string)
    security_group_ids = optional(list(string), [])
    extra_policy_arns  = optional(list(string), [])
    credential_binding = optional(string)
    capacity_type      = optional(string, "spot")
    on_demand_fallback = optional(bool, false)
    max_runners        = number
    weight             = optional(number, 1)
    runner_group       = optional(string, "Default")
    scope              = optional(string, "org")
    boot_timeout_secs  = optional(number, 300)
    idle_timeout_secs  = optional(number, 900)
    max_run_time_secs  = optional(number, 21600)
    startup_script     = optional(string)
    check_job_queued   = optional(bool, false)
    # null: the global allow_public_repositories.
    allow_public_repositories = optional(bool)
    runner_user               = optional(string, "runner")
    allow_unverified_runner   = optional(bool, false)
    root_volume_size_gb       = optional(number, 30)
    root_volume_type          = optional(string, "gp3")
    root_device_name          = optional(string, "/dev/xvda")
    sizing = optional(object({
      cpu      = list(number)
      ram_gib  = optional(list(number))
      families = optional(list(string), [])
      base_cpu = optional(number)
    }))
    spot = optional(object({
      reruns                = optional(number, 1)
      breaker_interruptions = optional(number, 2)
      breaker_window_secs   = optional(number, 900)
      breaker_cooldown_secs = optional(number, 1800)
    }), {})
    hot = optional(object({
      count           = number
      owner           = optional(string)
      repository      = optional(string)
      installation_id = optional(number)
      max_idle_secs   = optional(number, 3600)
      schedule = optional(list(object({
        days      = optional(list(string), [])
        from_hour = optional(number, 0)
        to_hour   = optional(number, 24)
      })), [])
    }))
  }))

  validation {
    condition     = alltrue([for p in var.pools : p.sizing == null || try(length(p.sizing.cpu) == 2 && p.sizing.cpu[0] >= 1 && p.sizing.cpu[0] <= p.sizing.cpu[1], false)])
    error_message = "A pool's sizing.cpu must be [min, max] with 1 <= min <= max."
  }
  validation {
    condition     = length(var.pools) > 0
    error_message = "pools must not be empty."
  }
  validation {
    condition     = alltrue([for p in var.pools : can(regex("^[a-z_][a-z0-9_-]{0,31}$", p.runner_user))])
    error_message = "A pool's runner_user must be a Linux user name: [a-z_][a-z0-9_-], at most 32 characters (\"root\" runs jobs as root)."
  }
  validation {
    condition     = var.runner_version != "latest" || alltrue([for p in var.pools : !p.allow_unverified_runner])
    error_message = "A pool's allow_unverified_runner needs a pinned runner_version, not \"latest\"."
  }
  validation {
    condition     = alltrue([for p in var.pools : can(regex("^[A-Za-z0-9._-]{1,16}$", p.name))])
    error_message = "pool names must be 1 to 16 characters of A-Z a-z 0-9 . _ -."
  }
  validation {
    condition     = length(distinct([for p in var.pools : p.name])) == length(var.pools)
    error_message = "pool names must be unique."
  }
  validation {
    condition     = alltrue([for p in var.pools : length(p.labels) > 0])
    error_message = "every pool needs at least one label."
  }
  validation {
    condition     = alltrue([for p in var.pools : p.ami == null || can(regex("^(ami-[0-9a-f]+|resolve:ssm:/.+)$", p.ami))])
    error_message = "pool ami must be an AMI id (ami-...) or resolve:ssm:/<parameter path>."
  }
  validation {
    condition     = alltrue([for p in var.pools : p.credential_binding == null || contains(["off", "endpoints", "strict"], coalesce(p.credential_binding, "off"))])
    error_message = "pool credential_binding must be off, endpoints or strict (or null for runner_credential_binding)."
  }
  validation {
    # IAM attaches at most 10 managed policies to a role (the default quota);
    # the three guardrail policies take three.
    condition     = alltrue([for p in var.pools : length(distinct(concat(var.runner_extra_policy_arns, p.extra_policy_arns))) <= 7])
    error_message = "runner_extra_policy_arns plus a pool's extra_policy_arns must be at most 7 policies (IAM's 10 per role, 3 of them the guardrails)."
  }
  validation {
    condition     = alltrue([for p in var.pools : alltrue([for a in p.extra_policy_arns : can(regex("^arn:[a-z-]+:iam::([0-9]{12}|aws):policy/.+$", a))])])
    error_message = "pool extra_policy_arns must be managed policy ARNs (arn:<partition>:iam::<account or aws>:policy/<name>)."
  }
  validation {
    condition     = alltrue([for p in var.pools : length(p.instance_types) > 0])
    error_message = "every pool needs at least one instance type."
  }
  validation {
    condition     = alltrue([for p in var.pools : contains(["x64", "arm64"], coalesce(p.architecture, "x64"))])
    error_message = "pool architecture must be x64 or arm64."
  }
  # One architecture per pool. The family rule is local.graviton_family (arch.tf,
  # mirroring crates/core/src/config/arch.rs); a validation may not use the
  # locals derived from var.pools, so the per-type test is spelled out here.
  validation {
    condition = alltrue([for p in var.pools : length(distinct([
      for t in p.instance_types : can(regex(local.graviton_family, lower(split(".", t)[0])))
    ])) <= 1])
    error_message = "pool instance_types must not mix x64 and arm64 (Graviton) types; pools mixing them: ${join(", ", [for p in var.pools : p.name if length(distinct([for t in p.instance_types : can(regex(local.graviton_family, lower(split(".", t)[0])))])) > 1])}."
  }
  validation {
    condition = alltrue([for p in var.pools : p.architecture == null || alltrue([
      for t in p.instance_types : can(regex(local.graviton_family, lower(split(".", t)[0]))) == (p.architecture == "arm64")
    ])])
    error_message = "pool architecture contradicts the pool's instance_types in pools: ${join(", ", [for p in var.pools : p.name if p.architecture != null && !alltrue([for t in p.instance_types : can(regex(local.graviton_family, lower(split(".", t)[0]))) == (p.architecture == "arm64")])])}."
  }
  validation {
    condition     = alltrue([for p in var.pools : alltrue([for s in p.subnets : startswith(s, "subnet-")])])
    error_message = "pool subnets must be subnet ids (subnet-...)."
  }
  validation {
    condition     = alltrue([for p in var.pools : contains(["spot", "on-demand"], p.capacity_type)])
    error_message = "pool capacity_type must be spot or on-demand."
  }
  validation {
    condition     = alltrue([for p in var.pools : !(p.on_demand_fallback && p.capacity_type == "on-demand")])
    error_message = "on_demand_fallback only applies to spot pools."
  }
  validation {
    condition     = alltrue([for p in var.pools : p.max_runners >= 1 && p.weight >= 1])
    error_message = "pool max_runners and weight must be at least 1."
  }
  validation {
    condition     = alltrue([for p in var.pools : contains(["org", "repo"], p.scope)])
    error_message = "pool scope must be org or repo."
  }
  validation {
    condition = alltrue([for p in var.pools :
      p.boot_timeout_secs >= 30 && p.boot_timeout_secs <= 3600 &&
      p.idle_timeout_secs >= 60 &&
      p.max_run_time_secs >= 60 && p.max_run_time_secs <= 172800 &&
      p.max_run_time_secs > p.boot_timeout_secs
    ])
    error_message = "pool timeouts: boot 30..3600 s, idle >= 60 s, max run time 60..172800 s and above the boot timeout."
  }
  validation {
    condition = alltrue([for p in var.pools :
      p.spot.reruns >= 0 && p.spot.reruns <= 5 && p.spot.breaker_interruptions >= 0 &&
      p.spot.breaker_window_secs >= 1 && p.spot.breaker_cooldown_secs >= 1
    ])
    error_message = "pool spot: reruns 0..5, breaker_interruptions >= 0 (0: off), breaker window and cool-down at least 1 s."
  }
  validation {
    condition     = alltrue([for p in var.pools : p.root_volume_size_gb >= 8 && contains(["gp2", "gp3", "io1", "io2"], p.root_volume_type)])
    error_message = "pool root volumes must be at least 8 GB of gp2, gp3, io1 or io2."
  }
}

# ---------------------------------------------------------------------------
# Runner instances and storage
# ---------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the S3 bucket for bootstrap.sh, startup scripts and the runner tarball cache; null: <prefix>-runner-<account id>-<region>."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name."
  }
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete the bucket with its objects (cached runner tarballs, old versions)."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which non-current object versions in the bucket are deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "runner_cache_upload" {
  description = "Let runner instances upload the runner tarball to s3://bucket/runner-cache/ on a cache miss, as new objects only (s3:PutObject with If-None-Match: *; an existing tarball cannot be replaced). Off by default and best left off: job code runs as root on the instance with its role, so with this on a job can plant a poisoned tarball for any runner version not cached yet, and every later runner of that version runs it. Seed the cache yourself instead (see README)."
  type        = bool
  default     = false
}

variable "runner_extra_policy_arns" {
  description = "Extra managed policy ARNs attached to every pool's runner role (what your jobs need; a pool's own extra_policy_arns reach that pool's jobs only). Keep this empty for least privilege. They cannot re-open this deployment's secrets or control plane: the roles' guardrail policies deny those explicitly (see README, IAM). Never grant IAM write access here: a job could create a principal without the guardrails."
  type        = list(string)
  default     = []
}

variable "runner_credential_binding" {
  description = "Bind the runner roles' credentials to the instance (aws:ec2InstanceSourceVPC, aws:ec2InstanceSourcePrivateIPv4): `endpoints` (default) refuses them through a VPC endpoint of another VPC or from another address (requests over the internet carry no VPC keys and are not bound); `strict` also refuses every request that does not come through a VPC endpoint (needs endpoints for ssm, ssmmessages, ec2messages, s3, kms when used, and whatever the jobs call); `off`. A pool's credential_binding overrides it."
  type        = string
  default     = "endpoints"

  validation {
    condition     = contains(["off", "endpoints", "strict"], var.runner_credential_binding)
    error_message = "runner_credential_binding must be off, endpoints or strict."
  }
}

# ---------------------------------------------------------------------------
# Alarms and emulator switches
# ---------------------------------------------------------------------------

variable "alarm_actions" {
  description = "ARNs (e.g. an SNS topic) notified by the CloudWatch alarms."
  type        = list(string)
  default     = []
}

variable "oldest_job_age_alarm_secs" {
  description = "Alarm when the oldest message in the jobs queue is older than this many seconds."
  type        = number
  default     = 600

  validation {
    condition     = var.oldest_job_age_alarm_secs >= 60
    error_message = "oldest_job_age_alarm_secs must be at least 60."
  }
}

variable "queue_time_alarm_p95_ms" {
  description = "Alarm (one per pool) when the p95 of queue_time_ms (GitHub's created_at to the launch request, published by create-runner) stays above this many milliseconds for queue_time_alarm_evaluation_periods periods of 5 minutes. null: no queue-time alarms."
  type        = number
  default     = 300000
  nullable    = true

  validation {
    condition     = var.queue_time_alarm_p95_ms == null || try(var.queue_time_alarm_p95_ms >= 1000, false)
    error_message = "queue_time_alarm_p95_ms must be at least 1000 (ms), or null."
  }
}

variable "queue_time_alarm_evaluation_periods" {
  description = "How many consecutive 5-minute periods the queue-time p95 must exceed queue_time_alarm_p95_ms before the alarm fires."
  type        = number
  default     = 3

  validation {
    condition     = var.queue_time_alarm_evaluation_periods >= 1 && var.queue_time_alarm_evaluation_periods <= 288 && floor(var.queue_time_alarm_evaluation_periods) == var.queue_time_alarm_evaluation_periods
    error_message = "queue_time_alarm_evaluation_periods must be a whole number from 1 to 288."
  }
}

variable "create_dashboard" {
  description = "Create the CloudWatch dashboard <prefix>-spotrunner (queue time by stage, launches by capacity, failures, DLQ depths, capacity per pool, webhook deliveries)."
  type        = bool
  default     = true
}

variable "enable_point_in_time_recovery" {
  description = "DynamoDB point-in-time recovery on the ledger. Keep true on AWS; examples/local turns it off only if the emulator lacks it."
  type        = bool
  default     = true
}

variable "enable_reserved_concurrency" {
  description = "Apply reserved_concurrency. Emulators that do not implement PutFunctionConcurrency can turn it off."
  type        = bool
  default     = true
}

variable "enable_tls_only_bucket_policy" {
  description = "Attach the bucket policy that denies every request not made over TLS. Keep true on AWS; examples/local turns it off because moto enforces bucket policies and is reached over plain HTTP."
  type        = bool
  default     = true
}
