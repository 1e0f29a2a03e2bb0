//! The pages `github-app create` serves on 127.0.0.1: the form that posts the
//! manifest to GitHub, and what happened after GitHub sent the browser back.

use spotrunner_core::github_app::Permission;

/// Escape text for HTML content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;line-height:1.5}}\
         code{{background:#f3f3f3;padding:0 .2rem}}button{{font-size:1.1rem;padding:.5rem 1rem}}</style>\
         </head><body><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = escape(title)
    )
}

/// The form: the manifest in a hidden field, posted to GitHub's "new App" page.
pub fn form(action: &str, manifest: &str, owner: &str, permissions: &[Permission]) -> String {
    let rows: String = permissions
        .iter()
        .map(|p| {
            format!(
                "<li><code>{}: {}</code> — {}</li>",
                escape(p.name),
                p.level.as_str(),
                escape(p.why)
            )
        })
        .collect();
    page(
        "Create spotrunner's GitHub App",
        &format!(
            "<p>This creates a private GitHub App owned by <b>{owner}</b> that sends \
             <code>workflow_job</code> events to spotrunner, with exactly these permissions:</p>\
             <ul>{rows}</ul>\
             <form id=\"manifest-form\" method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"manifest\" value=\"{manifest}\">\
             <button id=\"create\" type=\"submit\">Create the App on GitHub</button></form>\
             <p>GitHub asks you to confirm, then sends you back here; the App's key and \
             webhook secret are stored without being shown.</p>",
            owner = escape(owner),
            action = escape(action),
            manifest = escape(manifest),
        ),
    )
}

/// After a successful conversion: what was stored (references only) and where to install.
pub fn done(name: &str, id: u64, install_url: &str, stored: &[super::store::Stored]) -> String {
    let rows: String = stored
        .iter()
        .map(|s| {
            format!(
                "<li>{}: <code>{}</code> ({})</li>",
                escape(s.what),
                escape(&s.reference),
                escape(s.kind)
            )
        })
        .collect();
    page(
        "GitHub App created",
        &format!(
            "<p id=\"created\">Created <b>{name}</b> (App id {id}).</p><ul>{rows}</ul>\
             <p>Now install it on the accounts whose jobs spotrunner runs: \
             <a id=\"install\" href=\"{url}\">{url}</a></p>\
             <p>You can close this page; the command has finished.</p>",
            name = escape(name),
            url = escape(install_url),
        ),
    )
}

pub fn failed(message: &str) -> String {
    page(
        "The GitHub App was not set up",
        &format!(
            "<p id=\"error\">{}</p><p>See the terminal for details.</p>",
            escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_survives_the_attribute_and_markup_is_escaped() {
        let manifest = r#"{"name":"a<b>","url":"https://x?a=1&b='2'"}"#;
        let html = form(
            "https://github.com/settings/apps/new?state=s",
            manifest,
            "acme",
            &[],
        );
        assert!(html.contains(
            "value=\"{&quot;name&quot;:&quot;a&lt;b&gt;&quot;,&quot;url&quot;:&quot;https://x?a=1&amp;b=&#39;2&#39;&quot;}\""
        ), "{html}");
        assert!(!html.contains("a<b>"));
        assert!(html.contains("id=\"create\""));
    }
}
