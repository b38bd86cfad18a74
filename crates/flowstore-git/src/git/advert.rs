//! Asking a `git daemon` (a `git://` remote) which commit a ref is at, without libgit2: connect,
//! ask for `git-upload-pack`, read the ref advertisement (protocol v0) and hang up with a flush
//! (no wants), as `git ls-remote` does. The warm path of the clone cache uses it to learn that the
//! ref still names the commit it has a checkout of, so it need not start libgit2 (whose TLS setup
//! alone loads every CA certificate) nor fetch. Anything unexpected is an error the caller meets
//! by taking the ordinary path (libgit2's fetch), which reports it properly.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::config::Target;

/// How long to wait to connect, and for each read or write.
const TIMEOUT: Duration = Duration::from_secs(20);
/// The longest pkt-line (git's limit).
const MAX_PKT: usize = 65520;

/// A remote's refs, as it advertised them.
#[derive(Debug, Default)]
pub(crate) struct Advertisement {
    /// `(refname, object id)`, in the server's order (`HEAD` first when it has one); peeled tags
    /// as `refs/tags/<tag>^{}`.
    refs: Vec<(String, String)>,
    /// The branch `HEAD` points at (`symref=HEAD:<ref>` capability).
    head: Option<String>,
}

impl Advertisement {
    fn get(&self, name: &str) -> Option<&str> {
        self.refs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, oid)| oid.as_str())
    }

    /// The commit `target` names (tags peeled), if the remote advertises it; `None` for a commit
    /// target (nothing to ask the remote) and for what this cannot tell (no `symref` for the
    /// default branch).
    pub(crate) fn commit_of(&self, target: &Target) -> Option<String> {
        let oid = match target {
            Target::Branch(b) => self.get(&format!("refs/heads/{b}")),
            Target::Tag(t) => self
                .get(&format!("refs/tags/{t}^{{}}"))
                .or_else(|| self.get(&format!("refs/tags/{t}"))),
            Target::Default => self.get(self.head.as_deref()?),
            Target::Commit(_) => None,
        }?;
        Some(oid.to_string())
    }
}

/// True if `s` is a full SHA-1 object id in lower case.
pub(crate) fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The refs `url` (a `git://host[:port]/path` URL) advertises.
///
/// Errors: not a `git://` URL this can speak to, the connection fails or times out, the server
/// refuses (`ERR …`) or says something that is not a ref advertisement.
pub(crate) fn list_refs(url: &str) -> io::Result<Advertisement> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    let parsed = url::Url::parse(url).map_err(|_| bad("not a URL"))?;
    let path = parsed.path();
    if parsed.scheme() != "git" || path.contains('%') || path.len() < 2 {
        return Err(bad("not a plain git:// URL"));
    }
    let host = parsed.host().ok_or_else(|| bad("no host"))?;
    let port = parsed.port().unwrap_or(9418);
    let addrs: Vec<SocketAddr> = match host {
        url::Host::Domain(d) => (d, port).to_socket_addrs()?.collect(),
        url::Host::Ipv4(ip) => vec![(ip, port).into()],
        url::Host::Ipv6(ip) => vec![(ip, port).into()],
    };
    let mut stream = connect(&addrs)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    // As git sends it: the port only when the URL names one.
    let host_param = match parsed.port() {
        Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or_default()),
        None => parsed.host_str().unwrap_or_default().to_string(),
    };
    let request = format!("git-upload-pack {path}\0host={host_param}\0");
    stream.write_all(format!("{:04x}{request}", request.len() + 4).as_bytes())?;
    let advert = read_advertisement(&mut BufReader::new(&stream))?;
    // No wants: upload-pack ends quietly.
    let _ = stream.write_all(b"0000");
    Ok(advert)
}

fn connect(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads pkt-lines up to the flush that ends the advertisement.
pub(crate) fn read_advertisement(r: &mut impl Read) -> io::Result<Advertisement> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut advert = Advertisement::default();
    let mut first = true;
    loop {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let len = std::str::from_utf8(&len)
            .ok()
            .and_then(|l| usize::from_str_radix(l, 16).ok())
            .ok_or_else(|| invalid("not a pkt-line length".into()))?;
        if len == 0 {
            return Ok(advert);
        }
        if !(5..=MAX_PKT).contains(&len) {
            return Err(invalid(format!("pkt-line length {len}")));
        }
        let mut line = vec![0u8; len - 4];
        r.read_exact(&mut line)?;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Some(msg) = line.strip_prefix(b"ERR ") {
            return Err(io::Error::other(format!(
                "the server refused: {}",
                String::from_utf8_lossy(msg)
            )));
        }
        let (main, caps) = match line.iter().position(|&b| b == 0) {
            Some(nul) if first => (&line[..nul], Some(&line[nul + 1..])),
            Some(_) => return Err(invalid("capabilities after the first ref".into())),
            None => (&line[..], None),
        };
        first = false;
        let text = std::str::from_utf8(main).map_err(|_| invalid("a ref is not UTF-8".into()))?;
        if text.starts_with("version ") || text.starts_with("shallow ") {
            return Err(invalid(format!("unexpected {text:?}")));
        }
        let (oid, name) = text
            .split_once(' ')
            .filter(|(oid, _)| is_full_sha(oid))
            .ok_or_else(|| invalid(format!("not a ref line: {text:?}")))?;
        if let Some(caps) = caps {
            advert.head = String::from_utf8_lossy(caps)
                .split(' ')
                .find_map(|c| c.strip_prefix("symref=HEAD:"))
                .map(str::to_string);
        }
        advert.refs.push((name.to_string(), oid.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    #[test]
    fn an_advertisement_names_branches_peeled_tags_and_the_default_branch() {
        let (a, b, c) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        let text = [
            pkt(&format!(
                "{a} HEAD\0multi_ack symref=HEAD:refs/heads/main agent=git/2\n"
            )),
            pkt(&format!("{a} refs/heads/main\n")),
            pkt(&format!("{b} refs/heads/dev\n")),
            pkt(&format!("{c} refs/tags/v1\n")),
            pkt(&format!("{b} refs/tags/v1^{{}}\n")),
            pkt(&format!("{c} refs/tags/light\n")),
            "0000".to_string(),
        ]
        .concat();
        let ad = read_advertisement(&mut text.as_bytes()).unwrap();
        let of = |t: Target| ad.commit_of(&t);
        assert_eq!(of(Target::Branch("main".into())), Some(a.clone()));
        assert_eq!(of(Target::Branch("dev".into())), Some(b.clone()));
        assert_eq!(of(Target::Branch("gone".into())), None);
        assert_eq!(of(Target::Tag("v1".into())), Some(b.clone()));
        assert_eq!(of(Target::Tag("light".into())), Some(c));
        assert_eq!(of(Target::Default), Some(a.clone()));
        assert_eq!(of(Target::Commit(a)), None);
    }

    #[test]
    fn refusals_and_garbage_are_errors() {
        let refused = pkt("ERR access denied or repository not exported: /x.git");
        assert!(read_advertisement(&mut refused.as_bytes()).is_err());
        assert!(read_advertisement(&mut "00zz".as_bytes()).is_err());
        assert!(read_advertisement(&mut pkt("hello world\n").as_bytes()).is_err());
        // Cut short: no flush.
        let a = "a".repeat(40);
        assert!(read_advertisement(&mut pkt(&format!("{a} HEAD\n")).as_bytes()).is_err());
    }

    #[test]
    fn only_full_lower_case_shas_count() {
        assert!(is_full_sha(&"0a".repeat(20)));
        assert!(!is_full_sha(&"0A".repeat(20)));
        assert!(!is_full_sha("abc"));
    }
}
