//! The AWS side of the doctor: what the deployment's Lambdas need exists and answers.
//!
//! Every call is a read (Get/Describe), never a change. A failure says what was
//! looked for and what AWS answered (its error code), and how to fix it: which
//! Terraform output or variable, which command, or which IAM action the
//! caller lacks. Secret parameters are read without decryption and their
//! values are never shown.

use super::report::Check;
use aws_config::SdkConfig;
use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use futures::future::join_all;
use spotrunner_aws::runtime::EnvSource;
use spotrunner_core::Config;
use spotrunner_core::config::{ConfigError, GitHubAuth, Pool, SecretRef};
use std::collections::BTreeMap;

/// The id of the configuration parameter's check.
pub const CONFIG_PARAMETER: &str = "aws.config_parameter";

/// How the operator gets the CLI's resource variables (Terraform output).
const EXPORT_ENV: &str =
    "export them from Terraform: eval \"$(terraform output -raw cli_environment)\"";

/// The resource variables the CLI's AWS backend reads (`adapters::aws`).
const JOBS_QUEUE_ENV: &str = "SPOTRUNNER_JOBS_QUEUE_URL";
const BOOTSTRAP_QUEUE_ENV: &str = "SPOTRUNNER_BOOTSTRAP_QUEUE_URL";
const LEDGER_TABLE_ENV: &str = "SPOTRUNNER_LEDGER_TABLE";
const DLQ_ENV: &str = "SPOTRUNNER_DLQ_URL";
const SSM_DOCUMENT_ENV: &str = "SPOTRUNNER_SSM_DOCUMENT";

/// The ledger's key (`spotrunner_aws::dynamodb`: one string hash key `pk`).
const LEDGER_KEY: &str = "pk";

/// Read and validate the deployed configuration document (SSM parameter `parameter`).
pub async fn load_config(sdk: &SdkConfig, parameter: &str) -> (Check, Option<Config>) {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let what = format!("SSM parameter {parameter}");
    let answer = ssm
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await;
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            let fix = "terraform apply (output config_parameter names it), and pass that name as --config-parameter";
            let problem = Refusal::of(&e).problem(
                &what,
                "ssm:GetParameter (and kms:Decrypt if it is a SecureString)",
                fix,
            );
            return (problem.fail(CONFIG_PARAMETER), None);
        }
    };
    let Some(text) = out.parameter().and_then(|p| p.value()) else {
        return (
            Check::fail(
                CONFIG_PARAMETER,
                format!("{what}: AWS answered without a value"),
                "terraform apply writes the document again",
            ),
            None,
        );
    };
    let version = out.parameter().map(|p| p.version()).unwrap_or_default();
    match Config::from_json(text).and_then(|c| c.validate_for_aws().map(|()| c)) {
        Ok(config) => (
            Check::pass(
                CONFIG_PARAMETER,
                format!(
                    "{what} (version {version}): deployment {}, {} pool(s)",
                    config.deployment,
                    config.pools.len()
                ),
            ),
            Some(config),
        ),
        Err(e) => (
            Check::fail(
                CONFIG_PARAMETER,
                format!("{what} (version {version}): {}", redacted(e)),
                "correct the field named above: Terraform renders the document from its variables (pools, github_*, …), \
                 so fix them and terraform apply; `spotrunner config check FILE` checks a copy first",
            ),
            None,
        ),
    }
}

/// Every AWS resource `config` and the environment name.
pub async fn checks(sdk: &SdkConfig, config: &Config, env: &dyn EnvSource) -> Vec<Check> {
    let names = Resources::read(config, env);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let iam = aws_sdk_iam::Client::new(sdk);

    let queues = [
        ("jobs", names.jobs_queue.as_deref()),
        ("bootstrap", names.bootstrap_queue.as_deref()),
        ("dlq", names.dlq.as_deref()),
    ];
    let (queues, ledger, document, (templates, profile), subnets, secrets) = tokio::join!(
        join_all(
            queues
                .iter()
                .filter_map(|(q, url)| url.map(|url| queue(&sqs, q, url)))
        ),
        async {
            match &names.ledger_table {
                Some(table) => Some(ledger(&dynamodb, table).await),
                None => None,
            }
        },
        document(&ssm, &names.document, names.document_default),
        templates_and_profile(&ec2, &iam, config),
        join_all(
            config
                .pools
                .iter()
                .enumerate()
                .map(|(i, p)| pool_subnets(&ec2, i, p))
        ),
        join_all(
            secret_refs(config)
                .into_iter()
                .map(|(field, r)| secret(&ssm, field, r))
        ),
    );
    let mut out = vec![names.check()];
    out.extend(queues);
    out.extend(ledger);
    out.push(document);
    out.extend(templates);
    out.extend(subnets);
    out.push(profile);
    out.extend(secrets);
    out
}

/// The names of the resources the CLI's AWS backend uses, from the environment.
struct Resources {
    jobs_queue: Option<String>,
    bootstrap_queue: Option<String>,
    ledger_table: Option<String>,
    dlq: Option<String>,
    document: String,
    /// Whether `document` is the default (no `SPOTRUNNER_SSM_DOCUMENT`).
    document_default: bool,
}

impl Resources {
    fn read(config: &Config, env: &dyn EnvSource) -> Self {
        let get = |name: &str| env.get(name).filter(|v| !v.trim().is_empty());
        let document = get(SSM_DOCUMENT_ENV);
        Self {
            jobs_queue: get(JOBS_QUEUE_ENV),
            bootstrap_queue: get(BOOTSTRAP_QUEUE_ENV),
            ledger_table: get(LEDGER_TABLE_ENV),
            dlq: get(DLQ_ENV),
            document_default: document.is_none(),
            document: document.unwrap_or_else(|| format!("{}-bootstrap", config.deployment)),
        }
    }

    /// `aws.environment`.
    fn check(&self) -> Check {
        const ID: &str = "aws.environment";
        let missing: Vec<&str> = [
            (JOBS_QUEUE_ENV, &self.jobs_queue),
            (BOOTSTRAP_QUEUE_ENV, &self.bootstrap_queue),
            (LEDGER_TABLE_ENV, &self.ledger_table),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| name)
        .collect();
        let document = if self.document_default {
            format!(
                "SSM document {} ({SSM_DOCUMENT_ENV} unset: the default)",
                self.document
            )
        } else {
            format!("SSM document {}", self.document)
        };
        if !missing.is_empty() {
            return Check::fail(
                ID,
                format!(
                    "{} not set: the CLI's AWS backend requires it (what it names is not checked)",
                    missing.join(", ")
                ),
                EXPORT_ENV,
            );
        }
        if self.dlq.is_none() {
            return Check::warn(
                ID,
                format!(
                    "queues and ledger table set, {document}; {DLQ_ENV} not set: status and redrive cannot see the dead-letter queue"
                ),
                EXPORT_ENV,
            );
        }
        Check::pass(
            ID,
            format!(
                "jobs, bootstrap and dead-letter queues, ledger table {}, {document}",
                self.ledger_table.as_deref().unwrap_or_default()
            ),
        )
    }
}

/// `aws.queue.<name>`: the queue answers; its depth.
async fn queue(sqs: &aws_sdk_sqs::Client, name: &str, url: &str) -> Check {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let id = format!("aws.queue.{name}");
    let label = if name == "dlq" { "dead-letter" } else { name };
    let what = format!("{label} queue {url}");
    let answer = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await;
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            let (var, output) = match name {
                "jobs" => (JOBS_QUEUE_ENV, "jobs_queue_url"),
                "bootstrap" => (BOOTSTRAP_QUEUE_ENV, "bootstrap_queue_url"),
                _ => (DLQ_ENV, "dlq_url"),
            };
            let fix = format!(
                "terraform apply creates it (output {output}); {var} must be that URL: {EXPORT_ENV}"
            );
            return Refusal::of(&e)
                .problem(&what, "sqs:GetQueueAttributes", &fix)
                .fail(id);
        }
    };
    let count = |a: A| -> u64 {
        out.attributes()
            .and_then(|m| m.get(&a))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (waiting, in_flight, delayed) = (
        count(A::ApproximateNumberOfMessages),
        count(A::ApproximateNumberOfMessagesNotVisible),
        count(A::ApproximateNumberOfMessagesDelayed),
    );
    let detail = format!("{what}: {waiting} waiting, {in_flight} in flight, {delayed} delayed");
    if name == "dlq" && waiting + in_flight + delayed > 0 {
        return Check::warn(
            id,
            format!("{detail}: jobs whose handling failed again and again"),
            "look at them (`spotrunner redrive --backend aws --dry-run`), then send them back with `spotrunner redrive --backend aws`",
        );
    }
    Check::pass(id, detail)
}

/// `aws.ledger`: the table is ACTIVE and keyed as the ledger needs.
async fn ledger(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Check {
    use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType, TableStatus};
    const ID: &str = "aws.ledger";
    let what = format!("DynamoDB table {table}");
    let out = match dynamodb.describe_table().table_name(table).send().await {
        Ok(out) => out,
        Err(e) => {
            let fix = format!(
                "terraform apply creates it (output ledger_table); {LEDGER_TABLE_ENV} must name it: {EXPORT_ENV}"
            );
            return Refusal::of(&e)
                .problem(&what, "dynamodb:DescribeTable", &fix)
                .fail(ID);
        }
    };
    let Some(t) = out.table() else {
        return Check::fail(
            ID,
            format!("{what}: AWS answered without a description"),
            "run the doctor again",
        );
    };
    let keys: Vec<String> = t
        .key_schema()
        .iter()
        .map(|k| format!("{} ({})", k.attribute_name(), k.key_type()))
        .collect();
    let hash_is_string = t
        .attribute_definitions()
        .iter()
        .any(|a| a.attribute_name() == LEDGER_KEY && a.attribute_type() == &ScalarAttributeType::S);
    let keyed = t.key_schema().len() == 1
        && t.key_schema()[0].attribute_name() == LEDGER_KEY
        && t.key_schema()[0].key_type() == &KeyType::Hash
        && hash_is_string;
    if !keyed {
        return Check::fail(
            ID,
            format!(
                "{what}: key {}; the ledger's is one string hash key {LEDGER_KEY}",
                keys.join(", ")
            ),
            format!(
                "{LEDGER_TABLE_ENV} names another table: set it to the ledger (Terraform output ledger_table): {EXPORT_ENV}"
            ),
        );
    }
    match t.table_status() {
        Some(TableStatus::Active) => Check::pass(
            ID,
            format!(
                "{what}: ACTIVE, {} item(s) (approximate)",
                t.item_count().unwrap_or(0)
            ),
        ),
        Some(TableStatus::Updating) => Check::warn(
            ID,
            format!("{what}: UPDATING (usable meanwhile)"),
            "run the doctor again once the update has finished",
        ),
        other => Check::fail(
            ID,
            format!(
                "{what}: status {}, not ACTIVE",
                other.map(|s| s.as_str()).unwrap_or("unknown")
            ),
            "wait until it is ACTIVE (CREATING); DELETING/ARCHIVED or INACCESSIBLE_ENCRYPTION_CREDENTIALS: terraform apply, restore the table or its KMS key",
        ),
    }
}

/// `aws.ssm_document`: the bootstrap command document exists and is active.
/// `default`: the name is the CLI's default (no `SPOTRUNNER_SSM_DOCUMENT`).
async fn document(ssm: &aws_sdk_ssm::Client, name: &str, default: bool) -> Check {
    use aws_sdk_ssm::types::{DocumentStatus, DocumentType};
    const ID: &str = "aws.ssm_document";
    let what = if default {
        format!("SSM document {name} (the default name: {SSM_DOCUMENT_ENV} is unset)")
    } else {
        format!("SSM document {name}")
    };
    let fix = format!(
        "terraform apply creates it (output ssm_document); {SSM_DOCUMENT_ENV} must name it: {EXPORT_ENV}"
    );
    let out = match ssm.describe_document().name(name).send().await {
        Ok(out) => out,
        Err(e) => {
            return Refusal::of(&e)
                .problem(&what, "ssm:DescribeDocument", &fix)
                .fail(ID);
        }
    };
    let Some(d) = out.document() else {
        return Check::fail(
            ID,
            format!("{what}: AWS answered without a description"),
            fix,
        );
    };
    let version = d.default_version().unwrap_or("?");
    match (d.document_type(), d.status()) {
        (Some(DocumentType::Command), Some(DocumentStatus::Active)) => Check::pass(
            ID,
            format!("{what}: Command document, Active, default version {version}"),
        ),
        (Some(DocumentType::Command), status) => Check::fail(
            ID,
            format!(
                "{what}: status {}, not Active",
                status.map(|s| s.as_str()).unwrap_or("unknown")
            ),
            format!(
                "Creating/Updating: run the doctor again in a moment; Failed: aws ssm describe-document --name {name} says why, then terraform apply"
            ),
        ),
        (other, _) => Check::fail(
            ID,
            format!(
                "{what}: a {} document; RunCommand needs a Command document",
                other.map(|t| t.as_str()).unwrap_or("typeless")
            ),
            fix,
        ),
    }
}

/// What describing one launch template found.
enum Template {
    Found { id: String, default_version: i64 },
    Refused(Problem),
}

/// `aws.launch_template.<pool>` for every pool, and `aws.instance_profile`
/// from the templates found.
async fn templates_and_profile(
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
    config: &Config,
) -> (Vec<Check>, Check) {
    let mut names: Vec<&str> = Vec::new();
    for p in &config.pools {
        let name = p.launch_template.as_deref().unwrap_or_default();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let found: BTreeMap<&str, Template> = join_all(
        names
            .iter()
            .map(|name| async move { (*name, describe_template(ec2, name).await) }),
    )
    .await
    .into_iter()
    .collect();
    let checks = config
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let id = format!("aws.launch_template.{}", p.name);
            let name = p.launch_template.as_deref().unwrap_or_default();
            match &found[name] {
                Template::Found {
                    id: lt,
                    default_version,
                } => Check::pass(
                    id,
                    format!(
                        "pool {}: launch template {name} ({lt}, default version {default_version})",
                        p.name
                    ),
                ),
                Template::Refused(problem) => Problem {
                    detail: format!("pool {}: {}", p.name, problem.detail),
                    fix: problem.fix.replace("pools[N]", &format!("pools[{i}]")),
                }
                .fail(id),
            }
        })
        .collect();
    let existing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| matches!(found[n], Template::Found { .. }))
        .collect();
    (
        checks,
        instance_profile(ec2, iam, &existing, names.len()).await,
    )
}

async fn describe_template(ec2: &aws_sdk_ec2::Client, name: &str) -> Template {
    let what = format!("launch template {name}");
    let fix = "terraform apply creates each pool's template (<prefix>-<pool>; output launch_templates lists them), \
               or correct pools[N].launch_template to name an existing template";
    match ec2
        .describe_launch_templates()
        .launch_template_names(name)
        .send()
        .await
    {
        Ok(out) => match out.launch_templates().first() {
            Some(lt) => Template::Found {
                id: lt.launch_template_id().unwrap_or("?").to_string(),
                default_version: lt.default_version_number().unwrap_or(0),
            },
            None => Template::Refused(Problem {
                detail: format!("{what}: not found (AWS answered with no template)"),
                fix: fix.into(),
            }),
        },
        Err(e) => {
            Template::Refused(Refusal::of(&e).problem(&what, "ec2:DescribeLaunchTemplates", fix))
        }
    }
}

/// `aws.instance_profile`: each existing template's default version names an
/// instance profile (without one, a runner cannot reach SSM, so it is never
/// bootstrapped), and that profile exists with a role.
async fn instance_profile(
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
    templates: &[&str],
    configured: usize,
) -> Check {
    const ID: &str = "aws.instance_profile";
    if templates.is_empty() {
        return Check::warn(
            ID,
            format!("not checked: none of the {configured} launch template(s) could be read"),
            "fix the aws.launch_template checks first",
        );
    }
    let mut problems: Vec<Problem> = Vec::new();
    // Profile name → the templates using it.
    let mut profiles: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let read = join_all(
        templates
            .iter()
            .map(|name| async move { (*name, template_profile(ec2, name).await) }),
    )
    .await;
    for (template, answer) in read {
        match answer {
            Ok(Some(profile)) => profiles.entry(profile).or_default().push(template),
            Ok(None) => problems.push(Problem {
                detail: format!(
                    "launch template {template} ($Default version) has no IAM instance profile: its runners could not reach SSM and would never be bootstrapped"
                ),
                fix: format!(
                    "give {template} the runner's instance profile (iam_instance_profile; the module's templates use output runner_instance_profile), then terraform apply"
                ),
            }),
            Err(p) => problems.push(p),
        }
    }
    let roles = join_all(profiles.iter().map(|(profile, users)| async move {
        (profile, users, profile_roles(iam, profile, users).await)
    }))
    .await;
    let mut seen = Vec::new();
    for (profile, users, answer) in roles {
        match answer {
            Ok(roles) => seen.push(format!(
                "{} → instance profile {profile} (role {})",
                users.join(", "),
                roles.join(", ")
            )),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        return Check::pass(ID, seen.join("; "));
    }
    let mut fixes: Vec<String> = Vec::new();
    for p in &problems {
        if !fixes.contains(&p.fix) {
            fixes.push(p.fix.clone());
        }
    }
    let details: Vec<String> = problems.into_iter().map(|p| p.detail).collect();
    Check::fail(ID, details.join("; "), fixes.join("; "))
}

/// The instance profile (name) of `template`'s default version, if any.
async fn template_profile(
    ec2: &aws_sdk_ec2::Client,
    template: &str,
) -> Result<Option<String>, Problem> {
    let out = ec2
        .describe_launch_template_versions()
        .launch_template_name(template)
        .versions("$Default")
        .send()
        .await
        .map_err(|e| {
            Refusal::of(&e).problem(
                &format!("launch template {template} ($Default version)"),
                "ec2:DescribeLaunchTemplateVersions",
                "terraform apply (output launch_templates)",
            )
        })?;
    let spec = out
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .and_then(|d| d.iam_instance_profile());
    Ok(spec.and_then(|s| {
        s.name()
            .filter(|n| !n.is_empty())
            // arn:aws:iam::ACCOUNT:instance-profile[/path]/NAME
            .or_else(|| s.arn().and_then(|a| a.rsplit('/').next()))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    }))
}

/// The roles of instance profile `profile`; none is a problem.
async fn profile_roles(
    iam: &aws_sdk_iam::Client,
    profile: &str,
    users: &[&str],
) -> Result<Vec<String>, Problem> {
    let what = format!(
        "instance profile {profile} (of launch template {})",
        users.join(", ")
    );
    let out = iam
        .get_instance_profile()
        .instance_profile_name(profile)
        .send()
        .await
        .map_err(|e| {
            Refusal::of(&e).problem(
                &what,
                "iam:GetInstanceProfile",
                "terraform apply creates the runner's profile (output runner_instance_profile), \
                 or point the template's iam_instance_profile at an existing one",
            )
        })?;
    let roles: Vec<String> = out
        .instance_profile()
        .map(|p| {
            p.roles()
                .iter()
                .map(|r| r.role_name().to_string())
                .collect()
        })
        .unwrap_or_default();
    if roles.is_empty() {
        return Err(Problem {
            detail: format!("{what} has no role: its runners get no credentials for SSM"),
            fix: format!(
                "terraform apply (the module puts the runner role in it), or aws iam add-role-to-instance-profile --instance-profile-name {profile} --role-name ROLE"
            ),
        });
    }
    Ok(roles)
}

/// `aws.subnet.<pool>`: the pool's subnets exist (one DescribeSubnets by
/// filter: it answers with those that exist, so every missing id is named).
async fn pool_subnets(ec2: &aws_sdk_ec2::Client, index: usize, pool: &Pool) -> Check {
    use aws_sdk_ec2::types::Filter;
    let id = format!("aws.subnet.{}", pool.name);
    if pool.subnets.is_empty() {
        return Check::pass(
            id,
            format!(
                "pool {}: no subnets configured: the launch template's network settings decide",
                pool.name
            ),
        );
    }
    let what = format!("pool {}: subnets {}", pool.name, pool.subnets.join(", "));
    let fix = format!(
        "correct pools[{index}].subnets (Terraform variable pools, field subnets) to subnets of the deployment's VPC, then terraform apply"
    );
    let answer = ec2
        .describe_subnets()
        .filters(
            Filter::builder()
                .name("subnet-id")
                .set_values(Some(pool.subnets.clone()))
                .build(),
        )
        .send()
        .await;
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            return Refusal::of(&e)
                .problem(&what, "ec2:DescribeSubnets", &fix)
                .fail(id);
        }
    };
    let found: BTreeMap<&str, &aws_sdk_ec2::types::Subnet> = out
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(|i| (i, s)))
        .collect();
    let missing: Vec<&str> = pool
        .subnets
        .iter()
        .map(String::as_str)
        .filter(|s| !found.contains_key(s))
        .collect();
    if !missing.is_empty() {
        return Check::fail(
            id,
            format!(
                "pool {}: subnet(s) {} not found in this account and region (AWS answered {} of {})",
                pool.name,
                missing.join(", "),
                found.len(),
                pool.subnets.len()
            ),
            fix,
        );
    }
    let seen: Vec<String> = pool
        .subnets
        .iter()
        .map(|s| {
            let subnet = found[s.as_str()];
            format!(
                "{s} ({}, {}, {} free addresses)",
                subnet.availability_zone().unwrap_or("?"),
                subnet.vpc_id().unwrap_or("?"),
                subnet.available_ip_address_count().unwrap_or(0)
            )
        })
        .collect();
    let full: Vec<&str> = pool
        .subnets
        .iter()
        .map(String::as_str)
        .filter(|s| found[s].available_ip_address_count() == Some(0))
        .collect();
    if !full.is_empty() {
        return Check::warn(
            id,
            format!("pool {}: {}", pool.name, seen.join(", ")),
            format!(
                "{} has no free address: no runner launches there; add subnets to pools[{index}].subnets",
                full.join(", ")
            ),
        );
    }
    Check::pass(id, format!("pool {}: {}", pool.name, seen.join(", ")))
}

/// The configuration's secret references, by field.
fn secret_refs(config: &Config) -> Vec<(String, &SecretRef)> {
    let mut out = Vec::new();
    match &config.github.auth {
        GitHubAuth::App { private_key, .. } => {
            out.push(("github.auth.private_key".to_string(), private_key))
        }
        GitHubAuth::Pat { token } => out.push(("github.auth.token".to_string(), token)),
    }
    for (i, s) in config.webhook.secrets.iter().enumerate() {
        out.push((format!("webhook.secrets[{i}]"), s));
    }
    out
}

/// `aws.secret.<field>`: the referenced parameter exists, preferably as a
/// SecureString. Read without decryption; the value is dropped unread.
async fn secret(ssm: &aws_sdk_ssm::Client, field: String, reference: &SecretRef) -> Check {
    use aws_sdk_ssm::types::ParameterType;
    let id = format!("aws.secret.{field}");
    let name = match reference {
        SecretRef::Ssm(name) => name,
        other => {
            return Check::warn(
                id,
                format!(
                    "{field} is {other}, not an SSM parameter: each process reads it from its own environment or files, not checked here"
                ),
                "on AWS use an ssm: reference (the Lambdas read SSM), e.g. the parameter Terraform writes",
            );
        }
    };
    let what = format!("{field}: SSM parameter {name}");
    let answer = ssm
        .get_parameter()
        .name(name)
        .with_decryption(false)
        .send()
        .await;
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            let fix = format!(
                "`spotrunner github-app create --backend aws …` writes it, or set it with aws ssm put-parameter --name {name} --type SecureString --value …"
            );
            return Refusal::of(&e)
                .problem(&what, "ssm:GetParameter", &fix)
                .fail(id);
        }
    };
    let (kind, version) = out
        .parameter()
        .map(|p| (p.r#type().cloned(), p.version()))
        .unwrap_or((None, 0));
    match kind {
        Some(ParameterType::SecureString) => {
            Check::pass(id, format!("{what}: a SecureString (version {version})"))
        }
        other => Check::warn(
            id,
            format!(
                "{what}: a {} parameter (version {version}), stored unencrypted",
                other.as_ref().map(|t| t.as_str()).unwrap_or("typeless")
            ),
            format!(
                "store it as SecureString: aws ssm put-parameter --name {name} --type SecureString --overwrite --value … (delete it first if SSM refuses the change of type)"
            ),
        ),
    }
}

/// A problem found: what was seen and what to do.
struct Problem {
    detail: String,
    fix: String,
}

impl Problem {
    fn fail(self, id: impl Into<String>) -> Check {
        Check::fail(id, self.detail, self.fix)
    }
}

/// What AWS answered to a call that failed: its error code and message, or
/// why there was no answer.
#[derive(Debug)]
struct Refusal {
    code: Option<String>,
    message: String,
}

impl Refusal {
    fn of<E, R>(e: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match e {
            SdkError::ServiceError(s) => Self {
                code: s.err().code().map(str::to_string),
                message: s
                    .err()
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| s.err().to_string()),
            },
            other => Self {
                code: None,
                message: DisplayErrorContext(other).to_string(),
            },
        }
    }

    /// The problem of looking for `what`: by the answer's code, `missing_fix`
    /// (not found, or any other refusal of the request), the IAM `action` the
    /// caller lacks, or the credentials, region or network.
    fn problem(&self, what: &str, action: &str, missing_fix: &str) -> Problem {
        let Some(code) = self.code.as_deref() else {
            return Problem {
                detail: format!("{what}: no answer from AWS: {}", self.message),
                fix: "check the region (AWS_REGION), credentials (aws sts get-caller-identity), AWS_ENDPOINT_URL and network access to AWS".into(),
            };
        };
        let answered = format!("AWS answered {code}: {}", self.message);
        let (detail, fix) = if is_denied(code) {
            (
                format!("{what}: access denied ({answered})"),
                format!(
                    "the credentials in use (aws sts get-caller-identity) need {action} on it: allow it in their IAM policy"
                ),
            )
        } else if is_bad_credentials(code) {
            (
                format!("{what}: credentials refused ({answered})"),
                "refresh the AWS credentials (aws sso login, or the profile / AWS_* variables in use) and check them with aws sts get-caller-identity".into(),
            )
        } else if is_throttled(code) {
            (
                format!("{what}: throttled ({answered})"),
                "run the doctor again in a moment".into(),
            )
        } else if is_not_found(code) {
            (
                format!("{what}: not found ({answered})"),
                missing_fix.into(),
            )
        } else {
            (format!("{what}: {answered}"), missing_fix.into())
        };
        Problem { detail, fix }
    }
}

fn is_denied(code: &str) -> bool {
    code.contains("AccessDenied")
        || matches!(
            code,
            "UnauthorizedOperation" | "AuthorizationError" | "UnauthorizedAccess" | "Forbidden"
        )
}

fn is_bad_credentials(code: &str) -> bool {
    matches!(
        code,
        "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidAccessKeyId"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "RequestExpired"
            | "AuthFailure"
            | "SignatureDoesNotMatch"
            | "InvalidSignatureException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
    )
}

fn is_throttled(code: &str) -> bool {
    code.contains("Throttl") || code == "RequestLimitExceeded" || code == "TooManyRequestsException"
}

fn is_not_found(code: &str) -> bool {
    code.contains("NotFound")
        || code.contains("NonExistent")
        || matches!(
            code,
            "QueueDoesNotExist" | "NoSuchEntity" | "InvalidDocument"
        )
}

/// A configuration error for display: messages about the secret fields
/// (`github.auth.*`, `webhook.secrets*`) lose any quoted text, which may be
/// a secret pasted where its reference belongs.
fn redacted(mut e: ConfigError) -> ConfigError {
    for f in &mut e.errors {
        let secret = f.field.starts_with("github.auth") || f.field.starts_with("webhook");
        if secret {
            f.message = strip_quoted(&f.message);
        }
    }
    e
}

/// `s` with every `"…"` span (Rust's debug quoting: `\"` inside) replaced
/// by `"<redacted>"`; an unclosed quote hides the rest.
fn strip_quoted(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            out.push(c);
            continue;
        }
        out.push_str("\"<redacted>\"");
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => break,
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! Against moto over HTTP through the real SDK: a deployment built as
    //! Terraform would, then one misconfiguration at a time.

    use super::*;
    use crate::doctor::report::Status;
    use aws_sdk_ec2::types::{
        InstanceType, LaunchTemplateIamInstanceProfileSpecificationRequest,
        RequestLaunchTemplateData,
    };
    use aws_sdk_ssm::types::ParameterType;
    use spotrunner_testkit::moto;
    use std::collections::BTreeMap;

    const PREFIX: &str = "doctor";
    const CONFIG: &str = "/doctor/config";
    const PRIVATE_KEY: &str = "/doctor/github/app-private-key";
    const WEBHOOK_SECRET: &str = "/doctor/webhook/secret";
    const PROFILE: &str = "doctor-runner";
    /// Values of the secrets: never in any check's detail or fix.
    const SECRET_VALUES: [&str; 2] = ["pem-bytes-never-shown", "hook-secret-never-shown"];

    /// A deployment on moto: what `terraform apply` builds.
    struct Deployed {
        _moto: moto::SharedMoto,
        sdk: SdkConfig,
        /// The configuration document (Terraform's fixture with moto's names).
        doc: serde_json::Value,
        /// The CLI's environment (Terraform's `cli_environment`).
        env: BTreeMap<String, String>,
        subnets: Vec<String>,
        image: String,
    }

    fn profile_arn() -> String {
        format!("arn:aws:iam::123456789012:instance-profile/{PROFILE}")
    }

    async fn deploy() -> Deployed {
        let moto = moto::shared().await;
        let sdk = spotrunner_aws::sdk::local(moto.url()).await;
        let (ec2, iam, ssm, sqs) = (
            aws_sdk_ec2::Client::new(&sdk),
            aws_sdk_iam::Client::new(&sdk),
            aws_sdk_ssm::Client::new(&sdk),
            aws_sdk_sqs::Client::new(&sdk),
        );
        // The runner's role in its instance profile.
        iam.create_role()
            .role_name(PROFILE)
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .unwrap();
        iam.create_instance_profile()
            .instance_profile_name(PROFILE)
            .send()
            .await
            .unwrap();
        iam.add_role_to_instance_profile()
            .instance_profile_name(PROFILE)
            .role_name(PROFILE)
            .send()
            .await
            .unwrap();
        // A VPC with two subnets.
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.9.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc
            .and_then(|v| v.vpc_id)
            .unwrap();
        let mut subnets = Vec::new();
        for (i, az) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
            let subnet = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(format!("10.9.{i}.0/24"))
                .availability_zone(*az)
                .send()
                .await
                .unwrap()
                .subnet
                .and_then(|s| s.subnet_id)
                .unwrap();
            subnets.push(subnet);
        }
        let image = ec2.describe_images().send().await.unwrap().images()[0]
            .image_id()
            .unwrap()
            .to_string();
        // One template a pool, as the module: the profile by ARN; `arm` by name.
        for pool in ["cpu", "od"] {
            let profile = LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .arn(profile_arn())
                .build();
            template(&ec2, &format!("{PREFIX}-{pool}"), &image, Some(profile)).await;
        }
        let by_name = LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
            .name(PROFILE)
            .build();
        template(&ec2, &format!("{PREFIX}-arm"), &image, Some(by_name)).await;
        // The bootstrap document under the CLI's default name.
        ssm.create_document()
            .name(format!("{PREFIX}-bootstrap"))
            .content(include_str!("../../../../scripts/runner/ssm-document.yaml"))
            .document_format(aws_sdk_ssm::types::DocumentFormat::Yaml)
            .document_type(aws_sdk_ssm::types::DocumentType::Command)
            .send()
            .await
            .unwrap();
        let mut env = BTreeMap::new();
        for (var, queue) in [
            (JOBS_QUEUE_ENV, "jobs"),
            (BOOTSTRAP_QUEUE_ENV, "bootstrap"),
            (DLQ_ENV, "dlq"),
        ] {
            let url = sqs
                .create_queue()
                .queue_name(format!("{PREFIX}-{queue}"))
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            env.insert(var.to_string(), url);
        }
        let table = format!("{PREFIX}-ledger");
        spotrunner_aws::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
            .await
            .unwrap();
        env.insert(LEDGER_TABLE_ENV.to_string(), table);
        for (name, value) in [PRIVATE_KEY, WEBHOOK_SECRET].into_iter().zip(SECRET_VALUES) {
            put(&ssm, name, value, ParameterType::SecureString).await;
        }
        // Terraform's rendered document, on this account's names.
        let mut doc: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../terraform/tests/fixtures/config.json"
        ))
        .unwrap();
        doc["deployment"] = PREFIX.into();
        doc["github"]["auth"]["private_key"] = format!("ssm:{PRIVATE_KEY}").into();
        doc["webhook"]["secrets"] = serde_json::json!([format!("ssm:{WEBHOOK_SECRET}")]);
        for pool in doc["pools"].as_array_mut().unwrap() {
            pool["launch_template"] = format!("{PREFIX}-{}", pool["name"].as_str().unwrap()).into();
        }
        doc["pools"][0]["subnets"] = serde_json::json!(subnets);
        doc["pools"][1]["subnets"] = serde_json::json!([subnets[0]]);
        doc["pools"][2]["subnets"] = serde_json::json!([subnets[1]]);
        Deployed {
            _moto: moto,
            sdk,
            doc,
            env,
            subnets,
            image,
        }
    }

    async fn template(
        ec2: &aws_sdk_ec2::Client,
        name: &str,
        image: &str,
        profile: Option<LaunchTemplateIamInstanceProfileSpecificationRequest>,
    ) {
        ec2.create_launch_template()
            .launch_template_name(name)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(image)
                    .instance_type(InstanceType::M7iLarge)
                    .set_iam_instance_profile(profile)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    async fn put(ssm: &aws_sdk_ssm::Client, name: &str, value: &str, kind: ParameterType) {
        ssm.put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .overwrite(true)
            .send()
            .await
            .unwrap();
    }

    impl Deployed {
        fn ssm(&self) -> aws_sdk_ssm::Client {
            aws_sdk_ssm::Client::new(&self.sdk)
        }

        /// Deploy `doc` as the configuration parameter and run the AWS checks.
        async fn doctor(&self, doc: &serde_json::Value) -> Vec<Check> {
            put(&self.ssm(), CONFIG, &doc.to_string(), ParameterType::String).await;
            let (check, config) = load_config(&self.sdk, CONFIG).await;
            assert_eq!(check.status, Status::Pass, "{check:?}");
            let mut out = vec![check];
            out.extend(checks(&self.sdk, &config.unwrap(), &self.env).await);
            for c in &out {
                let text = format!("{} {}", c.detail, c.fix.as_deref().unwrap_or(""));
                for secret in SECRET_VALUES {
                    assert!(!text.contains(secret), "a secret shown: {c:?}");
                }
            }
            out
        }
    }

    fn find<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
    }

    /// Every check but `except` passed.
    fn others_pass(checks: &[Check], except: &[&str]) {
        for c in checks.iter().filter(|c| !except.contains(&c.id.as_str())) {
            assert_eq!(c.status, Status::Pass, "{c:?}");
        }
    }

    fn fix(c: &Check) -> &str {
        c.fix.as_deref().unwrap_or_default()
    }

    #[tokio::test]
    async fn a_correct_deployment_passes_every_check() {
        let d = deploy().await;
        let checks = d.doctor(&d.doc).await;
        let ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "aws.config_parameter",
                "aws.environment",
                "aws.queue.jobs",
                "aws.queue.bootstrap",
                "aws.queue.dlq",
                "aws.ledger",
                "aws.ssm_document",
                "aws.launch_template.cpu",
                "aws.launch_template.od",
                "aws.launch_template.arm",
                "aws.subnet.cpu",
                "aws.subnet.od",
                "aws.subnet.arm",
                "aws.instance_profile",
                "aws.secret.github.auth.private_key",
                "aws.secret.webhook.secrets[0]",
            ]
        );
        others_pass(&checks, &[]);
        let cpu = find(&checks, "aws.subnet.cpu");
        for s in &d.subnets {
            assert!(cpu.detail.contains(s.as_str()), "{cpu:?}");
        }
        let profile = find(&checks, "aws.instance_profile");
        assert!(
            profile
                .detail
                .contains(&format!("instance profile {PROFILE} (role {PROFILE})")),
            "{profile:?}"
        );
        assert!(
            find(&checks, "aws.ssm_document")
                .detail
                .contains("doctor-bootstrap"),
            "{checks:#?}"
        );
        assert!(
            find(&checks, "aws.secret.webhook.secrets[0]")
                .detail
                .contains("SecureString"),
            "{checks:#?}"
        );
    }

    #[tokio::test]
    async fn a_missing_launch_template_is_named_with_its_pool() {
        let d = deploy().await;
        let mut doc = d.doc.clone();
        doc["pools"][1]["launch_template"] = "doctor-gone".into();
        let checks = d.doctor(&doc).await;
        let c = find(&checks, "aws.launch_template.od");
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.detail.contains("pool od"), "{c:?}");
        assert!(c.detail.contains("doctor-gone"), "{c:?}");
        assert!(c.detail.contains("not found"), "{c:?}");
        assert!(
            c.detail
                .contains("InvalidLaunchTemplateName.NotFoundException"),
            "the code AWS answered: {c:?}"
        );
        assert!(fix(c).contains("terraform apply"), "{c:?}");
        assert!(fix(c).contains("pools[1].launch_template"), "{c:?}");
        // The profile is read from the templates that exist.
        others_pass(&checks, &["aws.launch_template.od"]);
    }

    #[tokio::test]
    async fn missing_subnets_are_each_named() {
        let d = deploy().await;
        let mut doc = d.doc.clone();
        doc["pools"][0]["subnets"] =
            serde_json::json!([d.subnets[0], "subnet-0000dead", "subnet-0000beef"]);
        let checks = d.doctor(&doc).await;
        let c = find(&checks, "aws.subnet.cpu");
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(
            c.detail.contains("subnet-0000dead, subnet-0000beef"),
            "{c:?}"
        );
        assert!(!c.detail.contains(d.subnets[0].as_str()), "{c:?}");
        assert!(fix(c).contains("pools[0].subnets"), "{c:?}");
        others_pass(&checks, &["aws.subnet.cpu"]);
    }

    #[tokio::test]
    async fn a_template_without_an_instance_profile_fails_the_profile_check() {
        let d = deploy().await;
        let ec2 = aws_sdk_ec2::Client::new(&d.sdk);
        template(&ec2, "doctor-bare", &d.image, None).await;
        let mut doc = d.doc.clone();
        doc["pools"][2]["launch_template"] = "doctor-bare".into();
        let checks = d.doctor(&doc).await;
        let c = find(&checks, "aws.instance_profile");
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(
            c.detail.contains(
                "launch template doctor-bare ($Default version) has no IAM instance profile"
            ),
            "{c:?}"
        );
        assert!(c.detail.contains("SSM"), "{c:?}");
        assert!(!c.detail.contains("doctor-cpu"), "{c:?}");
        assert!(fix(c).contains("runner_instance_profile"), "{c:?}");
        others_pass(&checks, &["aws.instance_profile"]);
    }

    #[tokio::test]
    async fn a_missing_profile_or_one_without_a_role_fails() {
        let d = deploy().await;
        let (ec2, iam) = (
            aws_sdk_ec2::Client::new(&d.sdk),
            aws_sdk_iam::Client::new(&d.sdk),
        );
        let named = |n: &str| {
            Some(
                LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                    .name(n)
                    .build(),
            )
        };
        template(
            &ec2,
            "doctor-ghost",
            &d.image,
            named("doctor-ghost-profile"),
        )
        .await;
        iam.create_instance_profile()
            .instance_profile_name("doctor-empty")
            .send()
            .await
            .unwrap();
        template(&ec2, "doctor-empty", &d.image, named("doctor-empty")).await;
        let mut doc = d.doc.clone();
        doc["pools"][0]["launch_template"] = "doctor-ghost".into();
        doc["pools"][1]["launch_template"] = "doctor-empty".into();
        let checks = d.doctor(&doc).await;
        let c = find(&checks, "aws.instance_profile");
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(
            c.detail.contains(
                "instance profile doctor-ghost-profile (of launch template doctor-ghost): not found (AWS answered NoSuchEntity"
            ),
            "{c:?}"
        );
        assert!(
            c.detail.contains(
                "instance profile doctor-empty (of launch template doctor-empty) has no role"
            ),
            "{c:?}"
        );
        assert!(fix(c).contains("add-role-to-instance-profile"), "{c:?}");
        others_pass(&checks, &["aws.instance_profile"]);
    }

    #[tokio::test]
    async fn a_missing_secret_fails_and_a_plain_string_one_warns() {
        let d = deploy().await;
        let ssm = d.ssm();
        ssm.delete_parameter()
            .name(WEBHOOK_SECRET)
            .send()
            .await
            .unwrap();
        ssm.delete_parameter()
            .name(PRIVATE_KEY)
            .send()
            .await
            .unwrap();
        put(&ssm, PRIVATE_KEY, SECRET_VALUES[0], ParameterType::String).await;
        let checks = d.doctor(&d.doc).await;
        let c = find(&checks, "aws.secret.webhook.secrets[0]");
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.detail.contains(WEBHOOK_SECRET), "{c:?}");
        assert!(c.detail.contains("ParameterNotFound"), "{c:?}");
        assert!(
            fix(c).contains("spotrunner github-app create --backend aws"),
            "{c:?}"
        );
        assert!(fix(c).contains("--type SecureString"), "{c:?}");
        let k = find(&checks, "aws.secret.github.auth.private_key");
        assert_eq!(k.status, Status::Warn, "{k:?}");
        assert!(k.detail.contains("a String parameter"), "{k:?}");
        assert!(fix(k).contains("SecureString"), "{k:?}");
        others_pass(
            &checks,
            &[
                "aws.secret.webhook.secrets[0]",
                "aws.secret.github.auth.private_key",
            ],
        );
    }

    #[tokio::test]
    async fn a_missing_variable_fails_the_environment_and_its_resource_is_skipped() {
        let mut d = deploy().await;
        d.env.remove(LEDGER_TABLE_ENV);
        let checks = d.doctor(&d.doc).await;
        let c = find(&checks, "aws.environment");
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.detail.contains(LEDGER_TABLE_ENV), "{c:?}");
        assert!(!c.detail.contains(JOBS_QUEUE_ENV), "{c:?}");
        assert_eq!(
            fix(c),
            "export them from Terraform: eval \"$(terraform output -raw cli_environment)\""
        );
        assert!(checks.iter().all(|c| c.id != "aws.ledger"), "{checks:#?}");
        others_pass(&checks, &["aws.environment"]);

        // Without the optional DLQ: a warning, and no DLQ check.
        d.env
            .insert(LEDGER_TABLE_ENV.into(), format!("{PREFIX}-ledger"));
        d.env.remove(DLQ_ENV);
        let checks = d.doctor(&d.doc).await;
        let c = find(&checks, "aws.environment");
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.detail.contains(DLQ_ENV), "{c:?}");
        assert!(
            checks.iter().all(|c| c.id != "aws.queue.dlq"),
            "{checks:#?}"
        );
        others_pass(&checks, &["aws.environment"]);
    }

    #[tokio::test]
    async fn missing_queue_table_and_document_fail_each_with_its_output() {
        let mut d = deploy().await;
        let jobs = d.env[JOBS_QUEUE_ENV].clone();
        aws_sdk_sqs::Client::new(&d.sdk)
            .delete_queue()
            .queue_url(&jobs)
            .send()
            .await
            .unwrap();
        d.env.insert(LEDGER_TABLE_ENV.into(), "doctor-nope".into());
        d.env
            .insert(SSM_DOCUMENT_ENV.into(), "doctor-runner".into());
        let checks = d.doctor(&d.doc).await;
        let q = find(&checks, "aws.queue.jobs");
        assert_eq!(q.status, Status::Fail, "{q:?}");
        assert!(q.detail.contains(&jobs), "{q:?}");
        assert!(fix(q).contains("jobs_queue_url"), "{q:?}");
        let t = find(&checks, "aws.ledger");
        assert_eq!(t.status, Status::Fail, "{t:?}");
        assert!(
            t.detail
                .contains("doctor-nope: not found (AWS answered ResourceNotFoundException"),
            "{t:?}"
        );
        assert!(fix(t).contains("ledger_table"), "{t:?}");
        let s = find(&checks, "aws.ssm_document");
        assert_eq!(s.status, Status::Fail, "{s:?}");
        assert!(s.detail.contains("doctor-runner: not found"), "{s:?}");
        assert!(fix(s).contains("output ssm_document"), "{s:?}");
        others_pass(
            &checks,
            &["aws.queue.jobs", "aws.ledger", "aws.ssm_document"],
        );
    }

    #[tokio::test]
    async fn a_non_empty_dead_letter_queue_warns() {
        let d = deploy().await;
        let sqs = aws_sdk_sqs::Client::new(&d.sdk);
        for i in 0..2 {
            sqs.send_message()
                .queue_url(&d.env[DLQ_ENV])
                .message_body(format!("{{\"version\":1,\"n\":{i}}}"))
                .send()
                .await
                .unwrap();
        }
        let checks = d.doctor(&d.doc).await;
        let c = find(&checks, "aws.queue.dlq");
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.detail.contains("2 waiting"), "{c:?}");
        assert!(fix(c).contains("spotrunner redrive --backend aws"), "{c:?}");
        others_pass(&checks, &["aws.queue.dlq"]);
    }

    #[tokio::test]
    async fn a_bad_or_missing_configuration_parameter_fails_naming_the_field() {
        let d = deploy().await;
        let ssm = d.ssm();
        let (c, config) = load_config(&d.sdk, "/doctor/none").await;
        assert!(config.is_none());
        assert_eq!(c.id, CONFIG_PARAMETER);
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(
            c.detail
                .contains("/doctor/none: not found (AWS answered ParameterNotFound"),
            "{c:?}"
        );
        assert!(
            fix(&c).contains("terraform apply (output config_parameter names it)"),
            "{c:?}"
        );

        let mut doc = d.doc.clone();
        doc["pools"][1]["max_runners"] = "many".into();
        put(&ssm, CONFIG, &doc.to_string(), ParameterType::String).await;
        let (c, config) = load_config(&d.sdk, CONFIG).await;
        assert!(config.is_none());
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.detail.contains("pools[1].max_runners"), "{c:?}");

        // Valid, but not for AWS: a literal secret, named by field, never shown.
        let mut doc = d.doc.clone();
        doc["webhook"]["secrets"] = serde_json::json!([format!("value:{}", SECRET_VALUES[1])]);
        put(&ssm, CONFIG, &doc.to_string(), ParameterType::SecureString).await;
        let (c, config) = load_config(&d.sdk, CONFIG).await;
        assert!(config.is_none());
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(
            c.detail.contains("webhook.secrets[0]: value: secrets"),
            "{c:?}"
        );
        assert!(!c.detail.contains(SECRET_VALUES[1]), "{c:?}");

        // A secret pasted where its reference belongs is not echoed.
        let mut doc = d.doc.clone();
        doc["github"]["auth"]["private_key"] = SECRET_VALUES[0].into();
        put(&ssm, CONFIG, &doc.to_string(), ParameterType::SecureString).await;
        let (c, _) = load_config(&d.sdk, CONFIG).await;
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.detail.contains("github.auth"), "{c:?}");
        assert!(!c.detail.contains(SECRET_VALUES[0]), "{c:?}");
    }

    fn refusal(code: &str) -> Refusal {
        use aws_sdk_ssm::error::ErrorMetadata;
        use aws_sdk_ssm::operation::get_parameter::GetParameterError;
        let e: SdkError<GetParameterError, ()> = SdkError::service_error(
            GetParameterError::generic(ErrorMetadata::builder().code(code).message("m").build()),
            (),
        );
        Refusal::of(&e)
    }

    #[test]
    fn an_access_denial_names_the_iam_action() {
        for code in [
            "AccessDeniedException",
            "UnauthorizedOperation",
            "AccessDenied",
        ] {
            let p = refusal(code).problem("SSM parameter /x", "ssm:GetParameter", "apply");
            assert!(p.detail.contains("access denied"), "{}", p.detail);
            assert!(p.detail.contains(code), "{}", p.detail);
            assert!(p.fix.contains("need ssm:GetParameter"), "{}", p.fix);
        }
        let p = refusal("ExpiredToken").problem("x", "a", "apply");
        assert!(p.fix.contains("refresh the AWS credentials"), "{}", p.fix);
        let p = refusal("ValidationException").problem("x", "a", "apply");
        assert_eq!(p.fix, "apply");
        assert!(p.detail.contains("ValidationException: m"), "{}", p.detail);
    }

    #[test]
    fn quoted_text_is_redacted_escapes_and_all() {
        assert_eq!(
            strip_quoted(r#"invalid type: string "ab\"cd", expected x"#),
            r#"invalid type: string "<redacted>", expected x"#
        );
        assert_eq!(strip_quoted(r#"a "b"#), r#"a "<redacted>""#);
        assert_eq!(strip_quoted("no quotes"), "no quotes");
    }
}
