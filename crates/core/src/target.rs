//! Where a job's runner registers with GitHub. Create-runner registers it
//! there; teardown, stop-runner and the janitor find it there again.

use crate::config::{Pool, Scope};
use crate::job::JobMessage;
use crate::ports::{GitHubTarget, RunnerScope};

/// Where the job's runner registers: the pool's scope, except that a user's
/// repository has no organisation to register with, so its runners are
/// always the repository's (an org-scoped pool serves user repositories too).
pub fn github_target(msg: &JobMessage, pool: &Pool) -> GitHubTarget {
    let user_owned = msg.owner_type.eq_ignore_ascii_case("User");
    let scope = match pool.scope {
        Scope::Org if !user_owned => RunnerScope::Org {
            org: msg.owner.clone(),
        },
        Scope::Org | Scope::Repo => RunnerScope::Repo {
            owner: msg.owner.clone(),
            repo: msg
                .repository
                .split_once('/')
                .map_or(msg.repository.clone(), |(_, r)| r.to_string()),
        },
    };
    GitHubTarget {
        scope,
        installation_id: msg.installation_id,
    }
}
