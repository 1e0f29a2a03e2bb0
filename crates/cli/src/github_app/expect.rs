//! Is the App GitHub converted the code into the one `github-app create`
//! asked for? Checked before anything is stored.
//!
//! The code in the callback is what decides which App's credentials are
//! stored, and the person may rename the App on GitHub's confirmation page
//! (or a code of another App may arrive with the right state). So the
//! conversion's App must carry the requested name exactly and be owned by the
//! requested organisation (its login compared without case, its type
//! `Organization`) or, without `--org`, by a user (the command has no token
//! that names the signed-in user, so any user's login passes). A mismatch
//! stores nothing; the code was one-use and the App exists on GitHub, so the
//! error says where to delete it.

use spotrunner_github::AppCredentials;

/// What the command asked for.
pub struct Wanted<'a> {
    pub org: Option<&'a str>,
    pub name: &'a str,
}

/// `organisation acme`, `user octocat`: an account as the error names it.
fn account(kind: &str, login: &str) -> String {
    match kind {
        "Organization" => format!("organisation {login}"),
        "User" => format!("user {login}"),
        other => format!("{other:?} account {login}"),
    }
}

/// The App's settings page where it is deleted ("Advanced" → "Delete GitHub App").
pub fn delete_url(web_url: &str, app: &AppCredentials) -> String {
    let web = web_url.trim_end_matches('/');
    match app.owner.kind.as_str() {
        "Organization" => format!(
            "{web}/organizations/{}/settings/apps/{}/advanced",
            app.owner.login, app.slug
        ),
        _ => format!("{web}/settings/apps/{}/advanced", app.slug),
    }
}

/// `Ok` when `app` is the App asked for; else the error to show.
pub fn check(wanted: &Wanted<'_>, web_url: &str, app: &AppCredentials) -> Result<(), String> {
    let owner_ok = match wanted.org {
        Some(org) => app.owner.kind == "Organization" && app.owner.login.eq_ignore_ascii_case(org),
        None => app.owner.kind == "User",
    };
    let name_ok = app.name == wanted.name;
    if owner_ok && name_ok {
        return Ok(());
    }
    let expected_owner = match wanted.org {
        Some(org) => format!("organisation {org}"),
        None => "your personal account".to_string(),
    };
    let rename = if owner_ok {
        format!(
            " (with --name {:?} to keep the name given on GitHub)",
            app.name
        )
    } else {
        String::new()
    };
    Err(format!(
        "GitHub's code converted into an App that is not the App this command asked for: \
         expected an App named {:?} owned by {expected_owner}, GitHub returned App {} (id {}) \
         named {:?} owned by {}; nothing was stored. The code worked once, so that App exists: \
         delete it at {} (Delete GitHub App) if it is not yours to keep, and run this command again{rename}",
        wanted.name,
        app.slug,
        app.id,
        app.name,
        account(&app.owner.kind, &app.owner.login),
        delete_url(web_url, app),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(login: &str, kind: &str, name: &str) -> AppCredentials {
        serde_json::from_value(serde_json::json!({
            "id": 7, "slug": name.to_lowercase(), "name": name, "html_url": "h",
            "owner": {"login": login, "type": kind},
            "pem": "PEM", "webhook_secret": null, "client_id": "c", "client_secret": "cs"
        }))
        .unwrap()
    }

    const ORG: Wanted = Wanted {
        org: Some("acme"),
        name: "sr-acme",
    };
    const MINE: Wanted = Wanted {
        org: None,
        name: "sr-mine",
    };

    #[test]
    fn the_requested_owner_and_name_pass() {
        check(
            &ORG,
            "https://github.com",
            &app("ACME", "Organization", "sr-acme"),
        )
        .unwrap();
        check(
            &MINE,
            "https://github.com",
            &app("octocat", "User", "sr-mine"),
        )
        .unwrap();
    }

    #[test]
    fn another_owner_kind_or_name_is_named_with_where_to_delete_it() {
        for (wanted, got, expected, returned, url) in [
            (
                &ORG,
                app("evil", "Organization", "sr-acme"),
                "owned by organisation acme",
                "owned by organisation evil",
                "https://github.com/organizations/evil/settings/apps/sr-acme/advanced",
            ),
            (
                &ORG,
                app("acme", "User", "sr-acme"),
                "owned by organisation acme",
                "owned by user acme",
                "https://github.com/settings/apps/sr-acme/advanced",
            ),
            (
                &ORG,
                app("acme", "Organization", "Sr-Acme"),
                "named \"sr-acme\"",
                "named \"Sr-Acme\"",
                "https://github.com/organizations/acme/settings/apps/sr-acme/advanced",
            ),
            (
                &MINE,
                app("acme", "Organization", "sr-mine"),
                "owned by your personal account",
                "owned by organisation acme",
                "https://github.com/organizations/acme/settings/apps/sr-mine/advanced",
            ),
        ] {
            let e = check(wanted, "https://github.com/", &got).unwrap_err();
            for needle in [expected, returned, url, "nothing was stored", "delete"] {
                assert!(e.contains(needle), "{needle:?} not in {e}");
            }
        }
    }

    #[test]
    fn a_renamed_app_of_the_right_owner_suggests_keeping_the_name() {
        let e = check(
            &ORG,
            "https://github.com",
            &app("acme", "Organization", "sr-acme-2"),
        )
        .unwrap_err();
        assert!(e.contains("--name \"sr-acme-2\""), "{e}");
    }
}
