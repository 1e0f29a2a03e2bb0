//! The SQS → Lambda poller, played by hand on fault-free clients: receive
//! batches, hand them to create-runner's glue, delete what succeeded and make
//! the failures visible again at once (the test fast-forwards the retry delays).
//! Bootstrap messages are duplicated on the way (SQS delivers at least once).

use super::World;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Jobs,
    Bootstrap,
}

/// What one pump did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pumped {
    pub received: usize,
    pub retried: usize,
    pub duplicated: usize,
}

/// What the poller did for one job (its job and bootstrap messages).
#[derive(Debug, Clone, Copy)]
pub struct History {
    pub job_messages: usize,
    pub job_retries: usize,
    pub boot_messages: usize,
    pub boot_retries: usize,
    pub last: Instant,
}

/// The poller's memory: bodies already duplicated (each bootstrap message is
/// copied at most once) and each job's history.
#[derive(Default)]
pub struct Poller {
    duplicated: Mutex<HashSet<String>>,
    history: Mutex<BTreeMap<u64, History>>,
}

impl Poller {
    pub fn history(&self, job: u64) -> Option<History> {
        self.history.lock().unwrap().get(&job).copied()
    }

    fn note(&self, queue: Queue, body: &str, retried: bool) {
        let job = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["job_id"].as_u64());
        let Some(job) = job else { return };
        let mut h = self.history.lock().unwrap();
        let e = h.entry(job).or_insert(History {
            job_messages: 0,
            job_retries: 0,
            boot_messages: 0,
            boot_retries: 0,
            last: Instant::now(),
        });
        e.last = Instant::now();
        match queue {
            Queue::Jobs => {
                e.job_messages += 1;
                e.job_retries += usize::from(retried);
            }
            Queue::Bootstrap => {
                e.boot_messages += 1;
                e.boot_retries += usize::from(retried);
            }
        }
    }
}

/// Receive up to `max_batches` batches of `queue` and run them through the
/// handler, `invocations` batches at once.
pub async fn pump(
    w: &World,
    queue: Queue,
    max_batches: usize,
    invocations: usize,
    poller: &Poller,
) -> Pumped {
    let (url, name) = match queue {
        Queue::Jobs => (&w.jobs_url, "sr-jobs"),
        Queue::Bootstrap => (&w.boot_url, "sr-bootstrap"),
    };
    let mut batches = Vec::new();
    for _ in 0..max_batches {
        let out = w
            .direct
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(120)
            .send()
            .await
            .expect("receive");
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            break;
        }
        batches.push(msgs);
    }
    let mut stats = Pumped {
        received: batches.iter().map(Vec::len).sum(),
        ..Pumped::default()
    };
    if queue == Queue::Bootstrap {
        for m in batches.iter().flatten() {
            let body = m.body().unwrap_or_default().to_string();
            let h = body_hash(w.seed, &body);
            if h.is_multiple_of(3) && poller.duplicated.lock().unwrap().insert(body.clone()) {
                w.direct
                    .sqs
                    .send_message()
                    .queue_url(url)
                    .message_body(body)
                    .send()
                    .await
                    .expect("duplicate a bootstrap message");
                stats.duplicated += 1;
            }
        }
    }
    for group in batches.chunks(invocations.max(1)) {
        let calls = group.iter().map(|msgs| {
            let handler = w.create.clone();
            let event = crate::common::sqs_event(msgs, name);
            async move { (msgs, handler.handle(event).await) }
        });
        for (msgs, resp) in futures::future::join_all(calls).await {
            let failed: BTreeSet<String> = resp
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            for m in msgs {
                let handle = m.receipt_handle().unwrap();
                let retried = failed.contains(m.message_id().unwrap());
                poller.note(queue, m.body().unwrap_or_default(), retried);
                if retried {
                    stats.retried += 1;
                    w.direct
                        .sqs
                        .change_message_visibility()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .send()
                        .await
                        .expect("make a retried message visible");
                } else {
                    w.direct
                        .sqs
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete a handled message");
                }
            }
        }
    }
    stats
}

/// Messages on `queue`: visible + in flight + delayed.
pub async fn depth(w: &World, queue: Queue) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let url = match queue {
        Queue::Jobs => &w.jobs_url,
        Queue::Bootstrap => &w.boot_url,
    };
    let out = w
        .direct
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes");
    out.attributes()
        .map(|a| {
            a.values()
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
        })
        .unwrap_or(0)
}

/// A seeded, stable hash of a message body (which copies get duplicated).
fn body_hash(seed: u64, body: &str) -> u64 {
    let h = body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut z = (h ^ seed).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 31)
}
