//! spotrunner's compute port on EC2: one `CreateFleet` (type `instant`) per runner,
//! `TerminateInstances`, `DescribeInstances` by deployment tag, `CreateTags`.
//!
//! Kept apart from `spotrunner-aws` so that the webhook never links `aws-sdk-ec2`.

mod fleet;

pub use fleet::{CAPACITY_ERROR_CODES, fleet_outcome, is_capacity_code};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, InstanceLifecycleType, Tag};
use chrono::{DateTime, Utc};
use spotrunner_aws::error::{IDEMPOTENT_PARAMETER_MISMATCH, classify, code};
use spotrunner_core::config::CapacityType;
use spotrunner_core::names;
use spotrunner_core::ports::PortError;
use spotrunner_core::ports::{Compute, Instance, LaunchOutcome, LaunchRequest, tags};

const SERVICE: &str = "ec2";
const INSTANCE_NOT_FOUND: &str = "InvalidInstanceID.NotFound";
/// Every state but `shutting-down` and `terminated` (`Instance::is_live`).
const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];

/// [`Compute`] on EC2.
#[derive(Clone, Debug)]
pub struct Ec2Compute {
    client: Client,
    page_size: Option<i32>,
}

impl Ec2Compute {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self::from_client(Client::new(sdk))
    }

    /// Use a prepared client (tests use a mocked one).
    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            page_size: None,
        }
    }

    /// `MaxResults` of each `DescribeInstances` page (5..=1000; EC2's default otherwise).
    pub fn with_page_size(mut self, page_size: i32) -> Self {
        self.page_size = Some(page_size.clamp(5, 1000));
        self
    }

    /// CreateFleet said `IdempotentParameterMismatch`: the `ClientToken` was
    /// used before with other parameters, so an earlier call with it may have
    /// started this runner's VM (its answer lost, and the request changed since,
    /// e.g. the pool's configuration). Find that VM by the tags the launch put
    /// on it (deployment + runner name, live states). Never a refusal: a
    /// refusal would make the caller undo its reservation while the VM runs, so
    /// "not found" (or a failed lookup) is transient and alarms
    /// (`metric = "launch_token_mismatch"`); the retry looks again, and a VM
    /// that never turns up ends with the janitor's boot timeout.
    async fn find_launched(
        &self,
        req: &LaunchRequest,
        message: &str,
    ) -> Result<LaunchOutcome, PortError> {
        let runner = req.runner_name.as_str();
        let deployment = req
            .tags
            .iter()
            .find(|(k, _)| k == tags::DEPLOYMENT)
            .map(|(_, v)| v.as_str())
            .or_else(|| names::parse_runner_name(runner).map(|n| n.deployment));
        let not_found = |why: String| {
            tracing::error!(
                runner,
                pool = %req.pool,
                client_token = %req.client_token,
                metric = "launch_token_mismatch",
                mismatch = message,
                why,
                "CreateFleet: ClientToken reused with other parameters and no VM of the runner found; retrying, never undoing"
            );
            Err(PortError::unavailable(
                SERVICE,
                format!(
                    "launch runner {runner}: {IDEMPOTENT_PARAMETER_MISMATCH} for ClientToken {} \
                     and {why}; retried later (the first launch may still show up)",
                    req.client_token
                ),
            ))
        };
        let Some(deployment) = deployment else {
            return not_found("the request names no deployment to search".into());
        };
        let out = match self
            .client
            .describe_instances()
            .filters(tag_filter(tags::DEPLOYMENT, deployment))
            .filters(tag_filter(tags::RUNNER_NAME, runner))
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
                    .build(),
            )
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let e = classify(SERVICE, &format!("instances of runner {runner}"), e, &[]);
                return not_found(format!("looking it up by its tags failed: {e}"));
            }
        };
        let mut found: Vec<&aws_sdk_ec2::types::Instance> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.instance_id().is_some())
            .collect();
        found.sort_by_key(|i| {
            (
                i.launch_time().map(|t| (t.secs(), t.subsec_nanos())),
                i.instance_id(),
            )
        });
        let Some(first) = found.first() else {
            return not_found(format!(
                "no live instance tagged {}={deployment}, {}={runner}",
                tags::DEPLOYMENT,
                tags::RUNNER_NAME
            ));
        };
        let instance_id = first.instance_id().unwrap_or_default().to_string();
        if found.len() > 1 {
            tracing::warn!(
                runner,
                instances = ?found.iter().filter_map(|i| i.instance_id()).collect::<Vec<_>>(),
                "more than one live instance for one runner; taking the oldest"
            );
        }
        let capacity_type = match first.instance_lifecycle() {
            Some(InstanceLifecycleType::Spot) => CapacityType::Spot,
            _ => CapacityType::OnDemand,
        };
        tracing::warn!(
            runner,
            pool = %req.pool,
            client_token = %req.client_token,
            instance_id,
            mismatch = message,
            "CreateFleet: ClientToken reused with other parameters; found the runner's VM by its tags"
        );
        Ok(LaunchOutcome::Launched {
            instance_id,
            capacity_type,
        })
    }

    async fn terminate_batch(
        &self,
        ids: &[String],
    ) -> Result<
        (),
        aws_sdk_ec2::error::SdkError<
            aws_sdk_ec2::operation::terminate_instances::TerminateInstancesError,
            aws_sdk_ec2::config::http::HttpResponse,
        >,
    > {
        self.client
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Compute for Ec2Compute {
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, PortError> {
        let what = format!("launch runner {}", req.runner_name);
        match fleet::create_fleet(&self.client, req).send().await {
            Ok(out) => match fleet::token_mismatch(&out) {
                Some(message) => self.find_launched(req, message).await,
                None => fleet_outcome(&out, req),
            },
            Err(e) => {
                if code(&e) == Some(IDEMPOTENT_PARAMETER_MISMATCH) {
                    let message = aws_sdk_ec2::error::ProvideErrorMetadata::message(&e)
                        .unwrap_or_default()
                        .to_string();
                    return self.find_launched(req, &message).await;
                }
                if let Some(c) = code(&e).filter(|c| is_capacity_code(c)) {
                    let code = c.to_string();
                    let message = aws_sdk_ec2::error::ProvideErrorMetadata::message(&e)
                        .unwrap_or_default()
                        .to_string();
                    tracing::info!(runner = %req.runner_name, pool = %req.pool, %code, %message, "no capacity");
                    return Ok(LaunchOutcome::NoCapacity { code, message });
                }
                Err(classify(SERVICE, &what, e, &[]))
            }
        }
    }

    async fn terminate(&self, instance_ids: &[String]) -> Result<(), PortError> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        let what = format!("terminate {}", instance_ids.join(","));
        match self.terminate_batch(instance_ids).await {
            Ok(()) => Ok(()),
            Err(e) if code(&e) == Some(INSTANCE_NOT_FOUND) => {
                // One unknown id fails the whole call: go one by one, so the
                // ones that still exist are terminated and the gone ones count
                // as done.
                if instance_ids.len() == 1 {
                    return Ok(());
                }
                for id in instance_ids {
                    match self.terminate_batch(std::slice::from_ref(id)).await {
                        Ok(()) => {}
                        Err(e) if code(&e) == Some(INSTANCE_NOT_FOUND) => {}
                        Err(e) => {
                            return Err(classify(SERVICE, &format!("terminate {id}"), e, &[]));
                        }
                    }
                }
                Ok(())
            }
            Err(e) => Err(classify(SERVICE, &what, e, &[])),
        }
    }

    async fn list_instances(&self, deployment: &str) -> Result<Vec<Instance>, PortError> {
        let what = format!("instances of deployment {deployment}");
        let mut pages = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", tags::DEPLOYMENT))
                    .values(deployment)
                    .build(),
            )
            .set_max_results(self.page_size)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(SERVICE, &what, e, &[]))?;
            for reservation in page.reservations() {
                for i in reservation.instances() {
                    if let Some(instance) = to_instance(i) {
                        found.push(instance);
                    }
                }
            }
        }
        Ok(found)
    }

    async fn describe(
        &self,
        _deployment: &str,
        instance_ids: &[String],
    ) -> Result<Vec<Instance>, PortError> {
        if instance_ids.is_empty() {
            return Ok(Vec::new());
        }
        let what = format!("instances {}", instance_ids.join(","));
        let out = match self
            .client
            .describe_instances()
            .set_instance_ids(Some(instance_ids.to_vec()))
            .send()
            .await
        {
            Ok(out) => out,
            // One unknown id fails the call; a gone instance is simply not listed.
            Err(e) if code(&e) == Some(INSTANCE_NOT_FOUND) => {
                let mut found = Vec::new();
                for id in instance_ids {
                    match self
                        .client
                        .describe_instances()
                        .instance_ids(id)
                        .send()
                        .await
                    {
                        Ok(out) => found.extend(
                            out.reservations()
                                .iter()
                                .flat_map(|r| r.instances())
                                .filter_map(to_instance),
                        ),
                        Err(e) if code(&e) == Some(INSTANCE_NOT_FOUND) => {}
                        Err(e) => return Err(classify(SERVICE, &what, e, &[])),
                    }
                }
                return Ok(found);
            }
            Err(e) => return Err(classify(SERVICE, &what, e, &[])),
        };
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(to_instance)
            .collect())
    }

    async fn tag_instance(
        &self,
        instance_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), PortError> {
        self.client
            .create_tags()
            .resources(instance_id)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map_err(|e| {
                classify(
                    SERVICE,
                    &format!("instance {instance_id}"),
                    e,
                    &[INSTANCE_NOT_FOUND],
                )
            })?;
        Ok(())
    }
}

fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

fn to_instance(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    let instance_id = i.instance_id()?.to_string();
    let state = i
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string())
        .unwrap_or_default();
    let launched_at = i.launch_time().and_then(to_chrono);
    let tags = i
        .tags()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    Some(Instance {
        instance_id,
        state,
        launched_at,
        tags,
    })
}

fn to_chrono(t: &aws_sdk_ec2::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_smithy_time() {
        let t = aws_sdk_ec2::primitives::DateTime::from_secs_and_nanos(1_700_000_000, 5);
        let c = to_chrono(&t).unwrap();
        assert_eq!(c.timestamp(), 1_700_000_000);
        assert_eq!(c.timestamp_subsec_nanos(), 5);
    }
}
