//! Detection signatures: one JSON file per dialect, loaded at start.
//!
//! A signature names the method calls of one mining dialect, says which side
//! sends each, which parameters must be present for the call to count (so that
//! a generic `login` or `submit` from some other application does not), and
//! where the user agent, login and algorithm sit. Everything the detector
//! knows about dialects is here, as data; a user adds a dialect by adding a
//! file. See `signatures/README.md` for the format.

use std::collections::BTreeMap;
use std::path::Path;

use rustc_hash::FxHashMap;
use serde::Deserialize;

/// A signature file larger than this is a mistake, not a signature.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Extracted strings are shown to people and written to logs; keep them short.
pub const MAX_FIELD_CHARS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    // `error`, not `source`: the message already carries it, and a chain
    // printer would otherwise print it twice.
    #[error("{file}: {error}")]
    Io { file: String, error: std::io::Error },
    #[error("{file}: line {line}, column {column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("no signature files (*.json) in {0}")]
    Empty(String),
}

/// How a dialect's messages are framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Newline-delimited JSON over raw TCP.
    Line,
    /// JSON-RPC in HTTP POST bodies.
    Http,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Server,
}

/// A fact worth reporting about the miner or the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    Agent,
    Login,
    Algo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMethod {
    name: String,
    from: Role,
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    extract: BTreeMap<Field, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMarker {
    method: String,
    pointer: String,
    prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSignature {
    dialect: String,
    description: String,
    transport: Transport,
    #[serde(default)]
    refines: Option<String>,
    #[serde(default)]
    markers: Vec<FileMarker>,
    #[serde(default)]
    methods: Vec<FileMethod>,
    #[serde(default)]
    result_extract: BTreeMap<Field, String>,
    #[serde(default)]
    http_header_markers: Vec<String>,
}

/// Index of a dialect in its [`SignatureSet`].
pub type DialectId = usize;

#[derive(Debug)]
pub struct MethodSpec {
    pub dialect: DialectId,
    pub name: String,
    pub from: Role,
    pub require: Vec<String>,
    pub extract: Vec<(Field, String)>,
}

#[derive(Debug)]
pub struct Marker {
    /// Lower-case method name the marker looks in.
    pub method: String,
    pub pointer: String,
    /// Lower-case prefix the value at `pointer` must start with.
    pub prefix: String,
}

#[derive(Debug)]
pub struct Dialect {
    pub name: String,
    pub description: String,
    pub transport: Transport,
    /// The dialect this one narrows down, when one of its markers is seen.
    pub refines: Option<DialectId>,
    pub markers: Vec<Marker>,
    pub result_extract: Vec<(Field, String)>,
    /// Lower-case HTTP header names whose presence marks a mining request.
    pub http_header_markers: Vec<String>,
    /// Where the dialect came from, for `signatures list`.
    pub source: String,
}

#[derive(Debug, Default)]
pub struct SignatureSet {
    pub dialects: Vec<Dialect>,
    methods: Vec<MethodSpec>,
    /// (transport, lower-case method name) to indexes into `methods`.
    by_method: FxHashMap<(Transport, String), Vec<usize>>,
}

/// serde_json's message without the " at line L column C" it ends with,
/// which the error gives apart.
fn without_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    }
}

/// The signatures shipped in `signatures/`, built into the binary so that it
/// works from any directory.
const BUILTIN: &[(&str, &str)] = &[
    (
        "stratum-v1.json",
        include_str!("../signatures/stratum-v1.json"),
    ),
    (
        "ethereum-stratum.json",
        include_str!("../signatures/ethereum-stratum.json"),
    ),
    (
        "eth-proxy.json",
        include_str!("../signatures/eth-proxy.json"),
    ),
    (
        "cryptonote.json",
        include_str!("../signatures/cryptonote.json"),
    ),
    (
        "getwork-http.json",
        include_str!("../signatures/getwork-http.json"),
    ),
];

impl SignatureSet {
    pub fn builtin() -> Result<SignatureSet, SignatureError> {
        let files: Vec<(String, String)> = BUILTIN
            .iter()
            .map(|(n, t)| (format!("built-in {n}"), t.to_string()))
            .collect();
        SignatureSet::from_texts(&files)
    }

    /// Loads every `*.json` file in `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<SignatureSet, SignatureError> {
        let io = |e| SignatureError::Io {
            file: dir.display().to_string(),
            error: e,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(SignatureError::Empty(dir.display().to_string()));
        }
        let mut files = Vec::new();
        for p in paths {
            let name = p.display().to_string();
            let io = |e| SignatureError::Io {
                file: name.clone(),
                error: e,
            };
            let len = std::fs::metadata(&p).map_err(io)?.len();
            if len > MAX_FILE_BYTES {
                return Err(SignatureError::Invalid {
                    file: name,
                    message: format!("file is {len} bytes, more than the {MAX_FILE_BYTES} allowed"),
                });
            }
            let text = std::fs::read_to_string(&p).map_err(io)?;
            files.push((name, text));
        }
        SignatureSet::from_texts(&files)
    }

    /// Parses and validates signature texts given as (name, contents).
    pub fn from_texts(files: &[(String, String)]) -> Result<SignatureSet, SignatureError> {
        let mut parsed = Vec::new();
        for (file, text) in files {
            let sig: FileSignature =
                serde_json::from_str(text).map_err(|e| SignatureError::Syntax {
                    file: file.clone(),
                    line: e.line(),
                    column: e.column(),
                    message: without_position(&e),
                })?;
            parsed.push((file.clone(), sig));
        }

        let mut set = SignatureSet::default();
        let invalid = |file: &str, message: String| SignatureError::Invalid {
            file: file.to_string(),
            message,
        };
        for (file, sig) in &parsed {
            if sig.dialect.is_empty()
                || !sig
                    .dialect
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(invalid(
                    file,
                    format!(
                        "dialect name {:?} must be letters, digits and '-'",
                        sig.dialect
                    ),
                ));
            }
            if set.dialects.iter().any(|d| d.name == sig.dialect) {
                return Err(invalid(
                    file,
                    format!("dialect {:?} is defined twice", sig.dialect),
                ));
            }
            if sig.methods.is_empty() && sig.refines.is_none() {
                return Err(invalid(
                    file,
                    "a dialect needs methods, or `refines` with markers".into(),
                ));
            }
            if sig.refines.is_some() && sig.markers.is_empty() {
                return Err(invalid(file, "`refines` needs at least one marker".into()));
            }
            let pointers = sig
                .methods
                .iter()
                .flat_map(|m| m.require.iter().chain(m.extract.values()))
                .chain(sig.markers.iter().map(|m| &m.pointer))
                .chain(sig.result_extract.values());
            for p in pointers {
                if !p.is_empty() && !p.starts_with('/') {
                    return Err(invalid(
                        file,
                        format!("{p:?} is not a JSON pointer (it must start with '/')"),
                    ));
                }
            }
            set.dialects.push(Dialect {
                name: sig.dialect.clone(),
                description: sig.description.clone(),
                transport: sig.transport,
                refines: None,
                markers: sig
                    .markers
                    .iter()
                    .map(|m| Marker {
                        method: m.method.to_ascii_lowercase(),
                        pointer: m.pointer.clone(),
                        prefix: m.prefix.to_ascii_lowercase(),
                    })
                    .collect(),
                result_extract: sig
                    .result_extract
                    .iter()
                    .map(|(f, p)| (*f, p.clone()))
                    .collect(),
                http_header_markers: sig
                    .http_header_markers
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                source: file.clone(),
            });
        }

        for (id, (file, sig)) in parsed.iter().enumerate() {
            if let Some(base) = &sig.refines {
                let Some(b) = set.dialects.iter().position(|d| &d.name == base) else {
                    return Err(invalid(
                        file,
                        format!("`refines` names {base:?}, which no signature defines"),
                    ));
                };
                if b == id || set.dialects[b].transport != sig.transport {
                    return Err(invalid(file, format!("cannot refine {base:?}")));
                }
                set.dialects[id].refines = Some(b);
            }
            for m in &sig.methods {
                let key = (sig.transport, m.name.to_ascii_lowercase());
                let clash = set
                    .by_method
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .any(|&i| set.methods[i].from == m.from);
                if clash {
                    return Err(invalid(
                        file,
                        format!(
                            "method {:?} sent by the {:?} is claimed by another dialect",
                            m.name, m.from
                        ),
                    ));
                }
                set.by_method
                    .entry(key)
                    .or_default()
                    .push(set.methods.len());
                set.methods.push(MethodSpec {
                    dialect: id,
                    name: m.name.clone(),
                    from: m.from,
                    require: m.require.clone(),
                    extract: m.extract.iter().map(|(f, p)| (*f, p.clone())).collect(),
                });
            }
        }
        Ok(set)
    }

    /// Method specs for a lower-case method name on a transport.
    pub fn lookup(
        &self,
        transport: Transport,
        method_lower: &str,
    ) -> impl Iterator<Item = &MethodSpec> {
        // The tuple key wants an owned String; method names are short.
        self.by_method
            .get(&(transport, method_lower.to_string()))
            .into_iter()
            .flatten()
            .map(|&i| &self.methods[i])
    }

    /// Dialects that refine `base`.
    pub fn refinements(&self, base: DialectId) -> impl Iterator<Item = (DialectId, &Dialect)> {
        self.dialects
            .iter()
            .enumerate()
            .filter(move |(_, d)| d.refines == Some(base))
    }

    /// HTTP dialects whose header markers include `header_lower`.
    pub fn http_header_marker(&self, header_lower: &str) -> Option<DialectId> {
        self.dialects.iter().position(|d| {
            d.transport == Transport::Http
                && d.http_header_markers.iter().any(|h| h == header_lower)
        })
    }

    pub fn methods_of(&self, dialect: DialectId) -> impl Iterator<Item = &MethodSpec> {
        self.methods.iter().filter(move |m| m.dialect == dialect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<SignatureSet, SignatureError> {
        SignatureSet::from_texts(&[("test.json".to_string(), text.to_string())])
    }

    #[test]
    fn the_builtin_signatures_load() {
        let set = SignatureSet::builtin().unwrap();
        let names: Vec<&str> = set.dialects.iter().map(|d| d.name.as_str()).collect();
        for n in [
            "stratum-v1",
            "ethereum-stratum",
            "eth-proxy",
            "cryptonote",
            "getwork-http",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert!(set
            .lookup(Transport::Line, "mining.subscribe")
            .next()
            .is_some());
    }

    #[test]
    fn every_file_in_the_signatures_folder_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures");
        let on_disk = SignatureSet::load_dir(&dir).unwrap();
        let builtin = SignatureSet::builtin().unwrap();
        let names = |s: &SignatureSet| {
            s.dialects
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>()
        };
        let (mut a, mut b) = (names(&on_disk), names(&builtin));
        a.sort();
        b.sort();
        assert_eq!(a, b, "add new files in signatures/ to BUILTIN");
    }

    #[test]
    fn a_syntax_error_names_file_line_and_column() {
        let err = one("{\n  \"dialect\": \"x\",\n  oops\n}")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.json: line 3, column 3"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_an_error_not_ignored() {
        let err =
            one(r#"{"dialect":"x","description":"","transport":"line","methodz":[]}"#).unwrap_err();
        assert!(err.to_string().contains("methodz"), "{err}");
    }

    #[test]
    fn a_pointer_without_a_leading_slash_is_rejected() {
        let err = one(r#"{"dialect":"x","description":"","transport":"line",
                "methods":[{"name":"a","from":"client","require":["params"]}]}"#)
        .unwrap_err();
        assert!(err.to_string().contains("JSON pointer"), "{err}");
    }

    #[test]
    fn refining_an_unknown_dialect_is_rejected() {
        let err = one(
            r#"{"dialect":"x","description":"","transport":"line","refines":"nope",
                "markers":[{"method":"a","pointer":"/params/0","prefix":"x"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
