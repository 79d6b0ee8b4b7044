//! The dashboard (docs/dashboard.md): one page, its style sheet and its script,
//! embedded in the binary and served by the HTTP role at `/` without a token.
//! They hold no data: the script asks for the token, keeps it for the tab
//! only, and reads `/status`, `/history`, `/events` and the failed tasks with
//! it as any API client does; its buttons POST the control routes.
//!
//! No framework, no CDN, nothing fetched at build time: three files written
//! by hand, included as text. The headers in [`HEADERS`] let the page load
//! nothing but these files and talk to nothing but its own origin.

/// One embedded file.
#[derive(Debug, PartialEq)]
pub struct File {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

const FILES: [File; 3] = [
    File { path: "/", content_type: "text/html; charset=utf-8", body: include_str!("page.html") },
    File { path: "/dashboard.css", content_type: "text/css; charset=utf-8", body: include_str!("page.css") },
    File { path: "/dashboard.js", content_type: "text/javascript; charset=utf-8", body: include_str!("page.js") },
];

/// The embedded file served at `path`, if any.
pub fn file(path: &str) -> Option<&'static File> {
    FILES.iter().find(|f| f.path == path)
}

/// Sent with each file: only its own script, style and origin; never inside
/// another site's frame (its buttons must not be clicked through one); no
/// referrer.
pub const HEADERS: &[(&str, &str)] = &[
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_holds_no_data() {
        let page = file("/").unwrap().body;
        assert!(page.contains(r#"src="/dashboard.js""#) && page.contains(r#"href="/dashboard.css""#));
        assert!(!page.contains("<script>") && !page.contains("style="), "nothing inline: the policy forbids it");
        assert!(!page.contains("http://") && !page.contains("https://"), "no outside address");
        let script = file("/dashboard.js").unwrap().body;
        assert!(script.contains("sessionStorage"), "the token is kept for the tab only");
        assert!(!script.contains("localStorage") && !script.contains("innerHTML"));
        assert!(file("/nope").is_none());
    }
}
