//! Where `CREATE EXTERNAL TABLE ... LOCATION` may read: the allowed roots.
//!
//! A superuser defines sources, but the server process can read more than the data it
//! should serve (`/etc/passwd`, other services' files, cloud buckets its credentials
//! reach). So a location must lie under an allowed root: the data directory, and what the
//! operator lists with `--allow-location` (`TESSERA_ALLOW_LOCATIONS`).
//!
//! - A local path is compared after resolving it: `..`, `.` and symbolic links are
//!   resolved component by component; the part that does not exist yet (a directory to
//!   be filled, a glob such as `*.csv`) is taken as written on top of its nearest
//!   existing parent. So `/data/../etc/passwd` and a link from a root to `/etc` are both
//!   outside. (The check is made when the source is defined: a link planted under a root
//!   later is read through, as the files under a root are the operator's to manage.)
//! - A remote URL (`s3://`, `gs://`, `az://`, `http(s)://`, ...) is allowed only under a
//!   root listed explicitly as a URL prefix (`--allow-location s3://bucket/exports/`),
//!   compared after the URL's own normalisation (dot segments removed) and on a segment
//!   boundary, so `s3://bucket` does not allow `s3://bucket-other/`.

use std::path::{Component, Path, PathBuf};

use url::Url;

use super::error::{EngineError, Result};

/// The roots external sources may read from.
#[derive(Debug, Clone, Default)]
pub struct AllowedLocations {
    /// Resolved local directories (the data directory first, once the engine is open).
    dirs: Vec<PathBuf>,
    /// Normalised URL prefixes (`s3://bucket/exports/`).
    urls: Vec<String>,
}

/// A location, classified.
enum Target {
    Local(PathBuf),
    Remote(Url),
}

impl AllowedLocations {
    /// Roots as the operator wrote them (directories or URL prefixes). A directory that
    /// does not exist yet is resolved like a location (by its nearest existing parent).
    pub fn new<S: AsRef<str>>(roots: &[S]) -> Result<AllowedLocations> {
        let mut allowed = AllowedLocations::default();
        for root in roots {
            let root = root.as_ref().trim();
            if root.is_empty() {
                continue;
            }
            match target(root)? {
                Target::Local(p) => allowed.dirs.push(p),
                Target::Remote(u) => allowed.urls.push(u.to_string()),
            }
        }
        Ok(allowed)
    }

    /// Add a local directory (the data directory) as a root.
    pub fn with_dir(mut self, dir: &Path) -> Result<AllowedLocations> {
        let resolved = resolve(dir)?;
        if !self.dirs.contains(&resolved) {
            self.dirs.insert(0, resolved);
        }
        Ok(self)
    }

    /// The roots, for messages and logs.
    pub fn describe(&self) -> String {
        let mut all: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        all.extend(self.urls.iter().cloned());
        all.join(", ")
    }

    /// Whether `location` (as stored: absolute path or URL) lies under a root.
    pub fn check(&self, location: &str) -> Result<()> {
        let allowed = match target(location)? {
            Target::Local(path) => self.dirs.iter().any(|d| path.starts_with(d)),
            Target::Remote(url) => {
                let url = url.to_string();
                self.urls.iter().any(|root| under_url(&url, root))
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(EngineError::LocationNotAllowed {
                location: location.to_string(),
                roots: self.describe(),
            })
        }
    }
}

/// `url` equals `root` or continues it after a `/`.
fn under_url(url: &str, root: &str) -> bool {
    let root_trimmed = root.trim_end_matches('/');
    url == root_trimmed
        || url
            .strip_prefix(root_trimmed)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Classify a location: a URL with a scheme other than `file`, or a local path.
fn target(location: &str) -> Result<Target> {
    match Url::parse(location) {
        // A one-letter "scheme" is a Windows drive, not a URL.
        Ok(url) if url.scheme().len() > 1 => {
            if url.scheme() == "file" {
                let path = url.to_file_path().map_err(|()| {
                    EngineError::InvalidParameter(format!(
                        "location \"{location}\" is not a local file URL"
                    ))
                })?;
                Ok(Target::Local(resolve(&path)?))
            } else {
                Ok(Target::Remote(url))
            }
        }
        _ => Ok(Target::Local(resolve(Path::new(location))?)),
    }
}

/// Resolve `path` as the operating system would, component by component: each existing
/// prefix is canonicalised (its symbolic links followed), `..` steps back up, and what
/// does not exist is kept as written. A dangling symbolic link is refused, as where it
/// points cannot be checked.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| EngineError::io(Path::new("."), e))?
            .join(path)
    };
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => out.push(component),
            Component::CurDir => {}
            // `out` holds no links (each existing step was canonicalised), so stepping
            // back is a plain pop.
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                match std::fs::canonicalize(&out) {
                    Ok(real) => out = real,
                    Err(_) if out.is_symlink() => {
                        return Err(EngineError::InvalidParameter(format!(
                            "location \"{}\" goes through the dangling symbolic link {}",
                            path.display(),
                            out.display()
                        )))
                    }
                    Err(_) => {} // not there (yet): kept as written
                }
            }
        }
    }
    Ok(out)
}

/// Split `TESSERA_ALLOW_LOCATIONS`: roots separated by `:`, where the colons of a URL's
/// `scheme://` and of its `host:port` belong to the URL.
pub fn split_roots(text: &str) -> Vec<String> {
    let mut roots: Vec<String> = Vec::new();
    for piece in text.split(':') {
        let continues_url = roots.last().is_some_and(|last| {
            // "s3" + "//bucket/": the scheme's colon.
            let scheme = piece.starts_with("//")
                && !last.is_empty()
                && last
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            // "http://host" + "8080/dir": the port's colon (no path yet after the host).
            let port = piece.starts_with(|c: char| c.is_ascii_digit())
                && last
                    .split_once("://")
                    .is_some_and(|(_, rest)| !rest.contains('/'));
            scheme || port
        });
        match roots.last_mut() {
            Some(last) if continues_url => {
                last.push(':');
                last.push_str(piece);
            }
            _ => roots.push(piece.to_string()),
        }
    }
    roots.retain(|r| !r.is_empty());
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_resolved_before_comparing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("sub/a.csv"), "x\n").expect("write");
        let allowed = AllowedLocations::new(&[root.display().to_string()]).expect("roots");
        let ok = |l: &str| allowed.check(l).is_ok();
        let r = root.display();
        assert!(ok(&format!("{r}/sub/a.csv")));
        assert!(ok(&format!("{r}/sub/")));
        assert!(
            ok(&format!("{r}/not/yet/*.csv")),
            "missing parts as written"
        );
        assert!(ok(&format!("{r}/sub/../sub/a.csv")));
        assert!(ok(&format!("file://{r}/sub/a.csv")));
        assert!(!ok("/etc/passwd"));
        assert!(!ok(&format!("{r}/../outside.csv")));
        assert!(!ok(&format!("{r}/nope/../../outside.csv")));
        assert!(!ok(&format!("{r}/../../../../../../../etc/passwd")));
        assert!(!ok(&format!("{r}x/a.csv")), "a sibling sharing the prefix");
        assert!(!ok("file:///etc/passwd"));
        assert!(!ok("s3://bucket/a.csv"), "remote only when listed");
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_out_of_a_root_are_outside() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("secret.csv"), "x\n").expect("write");
        std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
        std::os::unix::fs::symlink(tmp.path().join("gone"), root.join("dangling"))
            .expect("symlink");
        let allowed = AllowedLocations::new(&[root.display().to_string()]).expect("roots");
        let r = root.display();
        assert!(allowed.check(&format!("{r}/link/secret.csv")).is_err());
        assert!(allowed.check(&format!("{r}/link/")).is_err());
        assert!(allowed.check(&format!("{r}/nope/../link/x.csv")).is_err());
        assert!(allowed.check(&format!("{r}/dangling/x.csv")).is_err());
        // A root reached through a link is the link's target.
        let via = tmp.path().join("via");
        std::os::unix::fs::symlink(&root, &via).expect("symlink");
        let allowed = AllowedLocations::new(&[via.display().to_string()]).expect("roots");
        assert!(allowed.check(&format!("{r}/a.csv")).is_ok());
    }

    #[test]
    fn remote_urls_need_a_listed_prefix() {
        let allowed = AllowedLocations::new(&["s3://bucket/exports/", "http://127.0.0.1:8000"])
            .expect("roots");
        let ok = |l: &str| allowed.check(l).is_ok();
        assert!(ok("s3://bucket/exports/crm.csv"));
        assert!(ok("s3://bucket/exports/"));
        assert!(!ok("s3://bucket/exports/../secrets/key.csv"));
        assert!(!ok("s3://bucket/other.csv"));
        assert!(!ok("s3://bucket-exports/crm.csv"));
        assert!(!ok("gs://bucket/exports/crm.csv"));
        assert!(ok("http://127.0.0.1:8000/remote.csv"));
        assert!(!ok("http://127.0.0.1:8001/remote.csv"));
        assert!(!ok("http://127.0.0.1:80000/x"));
        let err = allowed.check("/etc/passwd").expect_err("outside");
        assert!(err.to_string().contains("/etc/passwd"), "{err}");
        assert!(err.to_string().contains("--allow-location"), "{err}");
    }

    #[test]
    fn the_environment_list_keeps_url_colons() {
        assert_eq!(
            split_roots("/srv/a:/srv/b::s3://bucket/x/:http://127.0.0.1:8000/in:/srv/c"),
            vec![
                "/srv/a",
                "/srv/b",
                "s3://bucket/x/",
                "http://127.0.0.1:8000/in",
                "/srv/c"
            ]
        );
        assert!(split_roots("").is_empty());
    }
}
