//! Per-flow evidence: what each side said, read against the signatures.
//!
//! A flow becomes `suspected` when the client sends a mining call, and
//! `confirmed` when the server answers one of those calls in JSON-RPC (a
//! non-null `result` or `error` under the request's id) or pushes work on its
//! own (`mining.notify`, `job`, ...). An error answer counts: pools that serve
//! another dialect answer a wrong call with an error (`invalid method`), and
//! the answer shows a JSON-RPC service listening for mining calls. What does
//! not count is silence, an HTTP error page, or bytes that are not JSON-RPC,
//! so a forged request sent at an address that is not a pool stays
//! `suspected`, and suspected pools are not blocked by default.
//!
//! Who is client and who is server comes from the handshake when it was
//! captured; otherwise the first side to send a client call (or a server
//! push) settles it, and later messages that contradict it are ignored.

use serde_json::Value;

use super::framing::Unit;
use crate::flow::Side;
use crate::pools::{Confidence, Sighting};
use crate::signatures::{
    DialectId, Field, MethodSpec, Role, SignatureSet, Transport, MAX_FIELD_CHARS,
};

/// Requests awaiting an answer. A miner has a few in flight at most; the cap
/// keeps a client that never reads answers from growing the list.
const MAX_PENDING: usize = 16;

/// After confirmation, client messages still read to learn the login and
/// agent before the flow stops costing work.
const READ_AFTER_CONFIRM: u8 = 4;

#[derive(Default)]
pub struct Session {
    pub dialect: Option<DialectId>,
    pub client: Option<Side>,
    pub confidence: Option<Confidence>,
    /// What was learnt since the last time the flow was reported.
    pub sighting: Sighting,
    /// Something worth reporting changed since the last report.
    pub changed: bool,
    /// Lines that looked like JSON but were not (junk, nesting too deep).
    pub json_errors: u64,
    pending: Vec<(String, DialectId, Side)>,
    /// Outstanding HTTP mining requests: HTTP/1.1 answers come in order.
    http_pending: Vec<(DialectId, Side)>,
    after_confirm: u8,
}

impl Session {
    /// Whether there is nothing more worth reading in this flow.
    pub fn settled(&self) -> bool {
        self.confidence == Some(Confidence::Confirmed)
            && (self.sighting_complete() || self.after_confirm >= READ_AFTER_CONFIRM)
    }

    fn sighting_complete(&self) -> bool {
        self.sighting.login.is_some() && self.sighting.agent.is_some()
    }

    pub fn on_unit(&mut self, from: Side, unit: Unit<'_>, sigs: &SignatureSet) {
        match unit {
            Unit::Line(line) => self.on_line(from, line, sigs),
            Unit::Http {
                head,
                body,
                body_complete,
            } => self.on_http(from, head, body, body_complete, sigs),
        }
    }

    fn on_line(&mut self, from: Side, line: &[u8], sigs: &SignatureSet) {
        let line = line.trim_ascii_start();
        if line.first() != Some(&b'{') {
            return;
        }
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(_) => {
                self.json_errors += 1;
                return;
            }
        };
        if let Some(method) = v.get("method").and_then(Value::as_str) {
            let lower = method.to_ascii_lowercase();
            self.on_method(from, &lower, &v, Transport::Line, sigs);
        } else if v.get("result").is_some() || v.get("error").is_some() {
            self.on_response(from, &v, sigs);
        }
    }

    fn on_method(
        &mut self,
        from: Side,
        lower: &str,
        v: &Value,
        transport: Transport,
        sigs: &SignatureSet,
    ) -> bool {
        let Some(spec) = sigs
            .lookup(transport, lower)
            .find(|s| self.accepts(s, from, v))
        else {
            return false;
        };
        let dialect = self.resolve_dialect(spec.dialect, lower, v, sigs);
        if self
            .dialect
            .is_some_and(|d| d != dialect && !related(sigs, d, dialect))
        {
            // One dialect per flow: a second, unrelated one is noise.
            return false;
        }
        self.dialect = Some(dialect);

        match spec.from {
            Role::Client => {
                self.client = Some(from);
                if let Some(id) = v.get("id").filter(|id| !id.is_null()) {
                    if self.pending.len() >= MAX_PENDING {
                        self.pending.remove(0);
                    }
                    self.pending.push((id.to_string(), dialect, from));
                }
                if self.confidence.is_none() {
                    self.confidence = Some(Confidence::Suspected);
                }
                if self.confidence == Some(Confidence::Confirmed) {
                    self.after_confirm = self.after_confirm.saturating_add(1);
                }
            }
            Role::Server => {
                self.client = Some(from.other());
                self.confidence = Some(Confidence::Confirmed);
            }
        }
        self.note_method(&spec.name);
        for (field, pointer) in &spec.extract {
            self.extract(*field, v.pointer(pointer));
        }
        self.changed = true;
        true
    }

    /// Whether `spec` applies to a message `v` sent by `from`.
    fn accepts(&self, spec: &MethodSpec, from: Side, v: &Value) -> bool {
        let sender_ok = match (spec.from, self.client) {
            (_, None) => true,
            (Role::Client, Some(c)) => c == from,
            (Role::Server, Some(c)) => c != from,
        };
        sender_ok
            && spec
                .require
                .iter()
                .all(|p| v.pointer(p).is_some_and(|x| !x.is_null()))
    }

    /// The most specific dialect for a call of `base`: a refinement whose
    /// marker this message carries, or one already chosen for the flow.
    fn resolve_dialect(
        &self,
        base: DialectId,
        lower: &str,
        v: &Value,
        sigs: &SignatureSet,
    ) -> DialectId {
        for (id, d) in sigs.refinements(base) {
            let marked = d.markers.iter().any(|m| {
                m.method == lower
                    && v.pointer(&m.pointer)
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.to_ascii_lowercase().starts_with(&m.prefix))
            });
            if marked {
                return id;
            }
        }
        match self.dialect {
            Some(d) if sigs.dialects[d].refines == Some(base) => d,
            _ => base,
        }
    }

    fn on_response(&mut self, from: Side, v: &Value, sigs: &SignatureSet) {
        // The call with the answer's id; failing that, the oldest call still
        // waiting: servers that cannot parse a call answer without its id,
        // and some pools answer every call under a fixed id.
        let id = v.get("id").map(Value::to_string);
        let by_id = self
            .pending
            .iter()
            .position(|(p, _, requester)| Some(p) == id.as_ref() && *requester != from);
        let dialect = by_id
            .or_else(|| {
                self.pending
                    .iter()
                    .position(|(_, _, requester)| *requester != from)
            })
            .map(|at| self.pending.remove(at).1);
        let dialect = match dialect {
            Some(d) => d,
            None => {
                // A Stratum server answers an HTTP getwork request with a bare
                // JSON line, not HTTP: that answers the request all the same.
                let Some(at) = self
                    .http_pending
                    .iter()
                    .position(|(_, requester)| *requester != from)
                else {
                    return;
                };
                self.http_pending.remove(at).0
            }
        };
        if answers_in_protocol(v) {
            self.confirm();
            for (field, pointer) in &sigs.dialects[dialect].result_extract {
                self.extract(*field, v.pointer(pointer));
            }
        }
    }

    fn confirm(&mut self) {
        if self.confidence != Some(Confidence::Confirmed) {
            self.confidence = Some(Confidence::Confirmed);
            self.changed = true;
        }
    }

    fn on_http(
        &mut self,
        from: Side,
        head: &[u8],
        body: &[u8],
        complete: bool,
        sigs: &SignatureSet,
    ) {
        if head.starts_with(b"HTTP/") {
            // An answer: only interesting if it answers a mining request.
            let Some(at) = self
                .http_pending
                .iter()
                .position(|(_, requester)| *requester != from)
            else {
                return;
            };
            self.http_pending.remove(at);
            let json = body_json(body);
            let ok = match &json {
                Some(v) => answers_in_protocol(v),
                None => !complete && cut_body_has_result(body),
            };
            if ok {
                self.confirm();
            }
            return;
        }

        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut req = httparse::Request::new(&mut headers);
        if req.parse(head).is_err() || req.method != Some("POST") {
            return;
        }
        let mut agent = None;
        let mut marked = None;
        for h in req.headers.iter() {
            let name = h.name.to_ascii_lowercase();
            if name == "user-agent" {
                agent = Some(clean(&String::from_utf8_lossy(h.value)));
            } else if let Some(d) = sigs.http_header_marker(&name) {
                marked = Some(d);
            }
        }

        let v = body_json(body).unwrap_or(Value::Null);
        let method = v
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let by_method = match &method {
            Some(m) => self.on_method(from, m, &v, Transport::Http, sigs),
            None => false,
        };
        let dialect = match (by_method, marked) {
            (true, _) => self.dialect,
            (false, Some(d)) if self.client.is_none_or(|c| c == from) => {
                // A miner's request by its header, whatever the method.
                self.dialect = Some(d);
                self.client = Some(from);
                self.confidence.get_or_insert(Confidence::Suspected);
                if let Some(m) = v.get("method").and_then(Value::as_str) {
                    self.note_method(&clean(m));
                }
                self.changed = true;
                Some(d)
            }
            _ => None,
        };
        if let Some(d) = dialect {
            if self.http_pending.len() < MAX_PENDING {
                self.http_pending.push((d, from));
            }
            if self.sighting.agent.is_none() && agent.is_some() {
                self.sighting.agent = agent;
                self.changed = true;
            }
        }
    }

    fn note_method(&mut self, name: &str) {
        if !self.sighting.methods.iter().any(|m| m == name) {
            self.sighting.methods.push(name.to_string());
        }
    }

    fn extract(&mut self, field: Field, value: Option<&Value>) {
        let text = match value {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => match a.first() {
                Some(Value::String(s)) => s.clone(),
                _ => return,
            },
            Some(Value::Number(n)) => n.to_string(),
            _ => return,
        };
        if text.is_empty() {
            return;
        }
        let slot = match field {
            Field::Agent => &mut self.sighting.agent,
            Field::Login => &mut self.sighting.login,
            Field::Algo => &mut self.sighting.algo,
        };
        if slot.is_none() {
            *slot = Some(clean(&text));
            self.changed = true;
        }
    }
}

fn related(sigs: &SignatureSet, a: DialectId, b: DialectId) -> bool {
    sigs.dialects[a].refines == Some(b) || sigs.dialects[b].refines == Some(a)
}

/// A JSON-RPC answer: a result or an error, not both null.
fn answers_in_protocol(v: &Value) -> bool {
    let result = v.get("result").is_some_and(|r| !r.is_null());
    let error = v.get("error").is_some_and(|e| !e.is_null());
    result || error
}

fn body_json(body: &[u8]) -> Option<Value> {
    let body = body.trim_ascii();
    if body.first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// For a body cut at the gathering cap: does it open with a non-null result?
fn cut_body_has_result(body: &[u8]) -> bool {
    let Some(at) = memchr::memmem::find(body, b"\"result\"") else {
        return false;
    };
    let rest = body[at + 8..].trim_ascii_start();
    let Some(rest) = rest.strip_prefix(b":") else {
        return false;
    };
    !rest.trim_ascii_start().starts_with(b"null")
}

/// Wire text made fit to print: control characters (terminal escapes among
/// them) replaced, length capped.
pub fn clean(s: &str) -> String {
    s.chars()
        .take(MAX_FIELD_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(msgs: &[(Side, &str)]) -> Session {
        let sigs = SignatureSet::builtin().unwrap();
        let mut s = Session::default();
        for (side, m) in msgs {
            s.on_unit(*side, Unit::Line(m.as_bytes()), &sigs);
        }
        s
    }

    #[test]
    fn subscribe_answered_with_a_result_is_confirmed() {
        let s = run(&[
            (
                Side::Lo,
                r#"{"id":1,"method":"mining.subscribe","params":["cgminer/4.10.0"]}"#,
            ),
            (
                Side::Hi,
                r#"{"id":1,"result":[[["mining.notify","ae6812eb4cd7735a302a8a9dd95cf71f"]],"08000002",4],"error":null}"#,
            ),
        ]);
        assert_eq!(s.confidence, Some(Confidence::Confirmed));
        assert_eq!(s.client, Some(Side::Lo));
        assert_eq!(s.sighting.agent.as_deref(), Some("cgminer/4.10.0"));
    }

    #[test]
    fn a_request_alone_is_only_suspected() {
        let s = run(&[(
            Side::Lo,
            r#"{"id":1,"method":"mining.subscribe","params":[]}"#,
        )]);
        assert_eq!(s.confidence, Some(Confidence::Suspected));
    }

    #[test]
    fn an_error_answer_to_a_mining_call_confirms_a_jsonrpc_pool() {
        // As a CryptoNote pool answers a Stratum v1 subscribe (nesfit s1 scan).
        let s = run(&[
            (
                Side::Lo,
                r#"{"id": 214, "method": "mining.subscribe", "params": ["cgminer/3.7.2"]}"#,
            ),
            (
                Side::Hi,
                r#"{"id":214,"jsonrpc":"2.0","error":{"code":-1,"message":"invalid method"}}"#,
            ),
        ]);
        assert_eq!(s.confidence, Some(Confidence::Confirmed));
    }

    #[test]
    fn an_error_answer_without_an_id_goes_to_the_oldest_call() {
        let s = run(&[
            (
                Side::Lo,
                r#"{"id": 0, "method": "mining.subscribe", "params": ["cgminer/3.7.2"]}"#,
            ),
            (
                Side::Hi,
                r#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Procedure not found."},"result":null}"#,
            ),
        ]);
        assert_eq!(s.confidence, Some(Confidence::Confirmed));
    }

    #[test]
    fn an_answer_with_no_mining_call_waiting_confirms_nothing() {
        let s = run(&[
            (
                Side::Lo,
                r#"{"id":1,"method":"echo","params":["mining.subscribe"]}"#,
            ),
            (Side::Hi, r#"{"id":1,"result":true}"#),
        ]);
        assert_eq!(s.confidence, None);
    }

    #[test]
    fn the_client_answering_its_own_call_confirms_nothing() {
        let s = run(&[
            (
                Side::Lo,
                r#"{"id":1,"method":"mining.subscribe","params":[]}"#,
            ),
            (Side::Lo, r#"{"id":1,"result":true}"#),
        ]);
        assert_eq!(s.confidence, Some(Confidence::Suspected));
    }

    #[test]
    fn key_order_whitespace_and_case_do_not_matter() {
        let s = run(&[(
            Side::Lo,
            r#"  { "params" : [ ] , "id" : 1 , "method" : "Mining.Subscribe" }"#,
        )]);
        assert_eq!(s.confidence, Some(Confidence::Suspected));
        assert_eq!(s.sighting.methods, vec!["mining.subscribe"]);
    }

    #[test]
    fn a_job_push_alone_confirms_a_cryptonote_pool_mid_stream() {
        let s = run(&[(
            Side::Hi,
            r#"{"jsonrpc":"2.0","method":"job","params":{"blob":"0707","job_id":"1","target":"b88d0600","algo":"rx/0"}}"#,
        )]);
        assert_eq!(s.confidence, Some(Confidence::Confirmed));
        assert_eq!(s.client, Some(Side::Lo));
        assert_eq!(s.sighting.algo.as_deref(), Some("rx/0"));
    }

    #[test]
    fn a_generic_login_call_without_mining_parameters_is_not_mining() {
        let s = run(&[(
            Side::Lo,
            r#"{"id":1,"method":"login","params":{"user":"alice","password":"x"}}"#,
        )]);
        assert_eq!(s.confidence, None);
    }

    #[test]
    fn ethereum_stratum_is_told_apart_by_its_subscribe_marker() {
        let sigs = SignatureSet::builtin().unwrap();
        let s = run(&[(
            Side::Lo,
            r#"{"id":1,"method":"mining.subscribe","params":["ethminer/0.19","EthereumStratum/1.0.0"]}"#,
        )]);
        assert_eq!(sigs.dialects[s.dialect.unwrap()].name, "ethereum-stratum");
    }

    #[test]
    fn an_echo_server_repeating_the_request_does_not_confirm() {
        let req = r#"{"id":1,"method":"mining.subscribe","params":[]}"#;
        let s = run(&[(Side::Lo, req), (Side::Hi, req)]);
        assert_eq!(s.confidence, Some(Confidence::Suspected));
    }

    #[test]
    fn terminal_escapes_in_wire_strings_are_defused() {
        let s = run(&[(
            Side::Lo,
            "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"evil\\u001b[2J\"]}",
        )]);
        assert_eq!(s.sighting.agent.as_deref(), Some("evil\u{fffd}[2J"));
    }

    #[test]
    fn json_nested_far_too_deep_is_an_error_not_a_crash() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let s = run(&[(Side::Lo, &deep)]);
        assert_eq!(s.json_errors, 1);
    }
}
