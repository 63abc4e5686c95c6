//! Deployment origin rewrites, in both directions.
//!
//! A deployment may send a declared origin elsewhere: `https://api.example.com`
//! to a self-hosted instance, or to a provider double on loopback in
//! tests. The connector keeps asking for the declared origin and never learns
//! the target. Forward, a request for a declared origin goes to the target;
//! reverse, a URL at the target (a redirect, a browser page's location) is
//! mapped back to the declared origin before a connector or a page sees it.

use super::Origin;

/// The rewrite rules of a deployment, `declared → target`, first match wins.
#[derive(Clone, Copy, Debug)]
pub struct Rewrites<'a> {
    rules: &'a [(Origin, Origin)],
}

impl<'a> Rewrites<'a> {
    pub fn new(rules: &'a [(Origin, Origin)]) -> Self {
        Rewrites { rules }
    }

    /// Where a request for `declared` really goes, when a rule applies. A rule
    /// whose declared side is a `*.` pattern applies to every origin under it.
    pub fn forward(&self, declared: &Origin) -> Option<&'a Origin> {
        self.rules
            .iter()
            .find(|(from, _)| from.admits(declared))
            .map(|(_, to)| to)
    }

    /// The declared origin a `target` stands for, when a rule sends a concrete
    /// declared origin there. A `*.` rule is never reversed: which subdomain a
    /// target stood for is not known.
    pub fn reverse(&self, target: &Origin) -> Option<&'a Origin> {
        self.rules
            .iter()
            .find(|(from, to)| to == target && !from.is_wildcard())
            .map(|(from, _)| from)
    }

    /// [`Rewrites::forward`] on an absolute URL: the same path and query at
    /// the target. `None` when the URL does not parse or no rule applies.
    pub fn forward_url(&self, url: &str) -> Option<String> {
        let (origin, rest) = split_url(url)?;
        self.forward(&origin).map(|to| join_url(to, rest))
    }

    /// [`Rewrites::reverse`] on an absolute URL: the same path and query at
    /// the declared origin. `None` when the URL does not parse or no rule applies.
    pub fn reverse_url(&self, url: &str) -> Option<String> {
        let (origin, rest) = split_url(url)?;
        self.reverse(&origin).map(|from| join_url(from, rest))
    }
}

impl Rewrites<'_> {
    /// A `Link` header (RFC 8288: `<url>; rel="next", <url>; rel="last"`)
    /// with every absolute target URL at a rewrite target mapped back to its
    /// declared origin; parameters and relative targets stay as written.
    /// `None` when nothing was mapped.
    pub fn reverse_link(&self, header: &str) -> Option<String> {
        let mut out = String::with_capacity(header.len());
        let mut rest = header;
        let mut mapped = false;
        while let Some(open) = rest.find('<') {
            let Some(len) = rest[open..].find('>') else { break };
            let target = &rest[open + 1..open + len];
            out.push_str(&rest[..=open]);
            match self.reverse_url(target) {
                Some(back) => {
                    out.push_str(&back);
                    mapped = true;
                }
                None => out.push_str(target),
            }
            out.push('>');
            rest = &rest[open + len + 1..];
        }
        out.push_str(rest);
        mapped.then_some(out)
    }
}

/// An absolute URL's origin and everything after its authority (`/path?query#fragment`).
fn split_url(url: &str) -> Option<(Origin, &str)> {
    let origin = Origin::of_url(url)?;
    let after_scheme = &url[url.find("://")? + 3..];
    let rest = after_scheme.find(['/', '?', '#']).map_or("", |i| &after_scheme[i..]);
    Some((origin, rest))
}

fn join_url(origin: &Origin, rest: &str) -> String {
    let rest = if rest.is_empty() { "/" } else { rest };
    format!("{}://{}{rest}", origin.scheme, origin.authority())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        Origin::parse(s).unwrap()
    }

    fn rules() -> Vec<(Origin, Origin)> {
        vec![
            (origin("https://api.example.com"), origin("http://127.0.0.1:5555")),
            (origin("https://*.example.net"), origin("http://127.0.0.1:6666")),
        ]
    }

    #[test]
    fn a_declared_origin_goes_to_its_target() {
        let rules = rules();
        let r = Rewrites::new(&rules);
        assert_eq!(
            r.forward(&origin("https://api.example.com")),
            Some(&origin("http://127.0.0.1:5555"))
        );
        assert_eq!(
            r.forward(&origin("https://www.example.net")),
            Some(&origin("http://127.0.0.1:6666"))
        );
        assert_eq!(r.forward(&origin("https://example.com")), None);
        assert_eq!(
            r.forward_url("https://api.example.com/user/repos?page=2").as_deref(),
            Some("http://127.0.0.1:5555/user/repos?page=2")
        );
    }

    #[test]
    fn a_target_maps_back_to_its_concrete_declared_origin() {
        let rules = rules();
        let r = Rewrites::new(&rules);
        assert_eq!(
            r.reverse(&origin("http://127.0.0.1:5555")),
            Some(&origin("https://api.example.com"))
        );
        assert_eq!(
            r.reverse(&origin("http://127.0.0.1:6666")),
            None,
            "a wildcard rule is not reversed"
        );
        assert_eq!(
            r.reverse_url("http://127.0.0.1:5555/login?next=%2F#top").as_deref(),
            Some("https://api.example.com/login?next=%2F#top")
        );
        assert_eq!(
            r.reverse_url("http://127.0.0.1:5555").as_deref(),
            Some("https://api.example.com/")
        );
        assert_eq!(r.reverse_url("http://127.0.0.1:7777/x"), None);
        assert_eq!(r.reverse_url("/relative"), None);
    }

    #[test]
    fn a_link_headers_targets_at_a_rewrite_target_map_back() {
        let rules = rules();
        let r = Rewrites::new(&rules);
        let link = r#"<http://127.0.0.1:5555/user/repos?page=2&per_page=100>; rel="next", <http://127.0.0.1:5555/user/repos?page=9>; rel="last""#;
        assert_eq!(
            r.reverse_link(link).as_deref(),
            Some(
                r#"<https://api.example.com/user/repos?page=2&per_page=100>; rel="next", <https://api.example.com/user/repos?page=9>; rel="last""#
            )
        );
        assert_eq!(
            r.reverse_link(r#"</user/repos?page=2>; rel="next", <https://elsewhere.test/x>; rel="help""#),
            None,
            "relative and foreign targets stay as written"
        );
        assert_eq!(r.reverse_link(r#"<http://127.0.0.1:5555/x; rel="broken""#), None);
    }
}
