//! spotrunner's compute port on EC2: one `CreateFleet` (type `instant`) per runner,
//! `TerminateInstances`, `DescribeInstances` by deployment tag, `CreateTags`.
//!
//! Kept apart from `spotrunner-aws` so that the webhook never links `aws-sdk-ec2`.

mod fleet;

pub use fleet::{CAPACITY_ERROR_CODES, fleet_outcome, is_capacity_code};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Tag};
use chrono::{DateTime, Utc};
use spotrunner_aws::error::{classify, code};
use spotrunner_core::ports::PortError;
use spotrunner_core::ports::{Compute, Instance, LaunchOutcome, LaunchRequest, tags};

const SERVICE: &str = "ec2";
const INSTANCE_NOT_FOUND: &str = "InvalidInstanceID.NotFound";

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
            Ok(out) => fleet_outcome(&out, req),
            Err(e) => {
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
