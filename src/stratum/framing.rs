//! Cuts one direction's byte stream into the units the detector reads:
//! newline-terminated lines (raw-TCP Stratum) or HTTP messages (getwork).
//!
//! The framer decides what a stream is from its first bytes: `{` means
//! newline-delimited JSON, `POST ` or `HTTP/1.` means HTTP, and TLS, SSH or
//! an HTTP GET mean there is nothing here for us: the direction is ignored
//! from then on at the cost of one branch per segment. Anything else may be
//! the middle of a line (a capture that joined mid-stream, a gap) or a
//! preamble put before the login to hide it: the framer skips to the next
//! newline and decides again from there, within the inspection depth.
//!
//! Complete lines that arrive inside one segment are handed out without a
//! copy; only a line split across segments is gathered in a buffer, which is
//! capped at [`MAX_LINE`].

use memchr::memmem;

use super::budget::Budget;

/// Longest line we gather. Stratum lines are small: the largest seen in real
/// captures are Equihash `mining.submit` calls of about 2.8 KiB and
/// `mining.notify` pushes with long merkle branches of a few KiB. A longer
/// line is cut, counted, and framing resumes at the next newline.
pub const MAX_LINE: usize = 32 * 1024;

/// Longest HTTP message (head and the start of the body) we gather. Getwork
/// requests and answers are well under 2 KiB; a getblocktemplate answer can
/// be megabytes, but its first bytes already say whether it is a result.
pub const MAX_HTTP_MESSAGE: usize = 16 * 1024;

/// One unit handed to the detector.
#[derive(Debug, PartialEq, Eq)]
pub enum Unit<'a> {
    /// One line, without its newline.
    Line(&'a [u8]),
    /// One HTTP message: its head (start line and headers, with the blank
    /// line) and as much of its body as was gathered.
    Http {
        head: &'a [u8],
        body: &'a [u8],
        body_complete: bool,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Mode {
    /// Deciding what the stream is from its next bytes.
    #[default]
    Detect,
    Lines,
    Http,
    /// Skipping `n` more bytes of an HTTP body longer than we gather.
    HttpSkip(usize),
    /// Skipping a chunked HTTP body up to its last chunk.
    HttpSkipChunked,
    /// Skipping to the next newline, then deciding again.
    Resync,
    /// Nothing for us in this direction.
    Ignore,
}

#[derive(Default)]
pub struct Framer {
    mode: Mode,
    buf: Vec<u8>,
    /// Lines (or HTTP heads) cut at their cap since the owner last took
    /// this count into its statistics.
    pub lines_cut: u64,
}

/// The last chunk and the empty trailer that end a chunked HTTP body.
const CHUNKED_END: &[u8] = b"0\r\n\r\n";

/// What a stream's first bytes say it is, besides `{` (JSON lines). HTTP
/// requests other than POST, TLS records and SSH carry no Stratum a payload
/// reader can see, so they are dropped at once: most of a network's bytes
/// are these, and they then cost one branch per segment.
const STARTS: &[(&[u8], Mode)] = &[
    (b"POST ", Mode::Http),
    (b"HTTP/1.", Mode::Http),
    (b"GET ", Mode::Ignore),
    (b"HEAD ", Mode::Ignore),
    (b"PUT ", Mode::Ignore),
    (b"DELETE ", Mode::Ignore),
    (b"OPTIONS ", Mode::Ignore),
    (b"CONNECT ", Mode::Ignore),
    (b"PATCH ", Mode::Ignore),
    (b"SSH-", Mode::Ignore),
    // TLS records: change cipher spec, alert, handshake, application data.
    (b"\x14\x03", Mode::Ignore),
    (b"\x15\x03", Mode::Ignore),
    (b"\x16\x03", Mode::Ignore),
    (b"\x17\x03", Mode::Ignore),
];

/// Bytes needed to tell every start in [`STARTS`] apart.
const LONGEST_START: usize = 8;

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Whether this direction has been found to hold nothing we read.
    pub fn is_ignoring(&self) -> bool {
        self.mode == Mode::Ignore
    }

    /// Bytes held between segments.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Stops reading this direction and gives back what it held.
    pub fn stop(&mut self, budget: &Budget) {
        budget.give(self.buf.len());
        self.buf = Vec::new();
        self.mode = Mode::Ignore;
    }

    /// Bytes were lost before the next `push`: what was gathered is void.
    pub fn gap(&mut self, budget: &Budget) {
        if self.mode == Mode::Ignore {
            return;
        }
        budget.give(self.buf.len());
        self.buf.clear();
        self.mode = Mode::Resync;
    }

    /// Feeds the next in-order bytes; complete units go to `out`.
    pub fn push(&mut self, mut bytes: &[u8], budget: &Budget, out: &mut dyn FnMut(Unit<'_>)) {
        while !bytes.is_empty() {
            bytes = match self.mode {
                Mode::Ignore => return,
                Mode::Detect => self.detect(bytes, budget),
                Mode::Resync => match memchr::memchr(b'\n', bytes) {
                    Some(i) => {
                        self.mode = Mode::Detect;
                        &bytes[i + 1..]
                    }
                    None => return,
                },
                Mode::Lines => self.lines(bytes, budget, out),
                Mode::Http => self.http(bytes, budget, out),
                Mode::HttpSkip(n) => {
                    let k = n.min(bytes.len());
                    self.mode = if k == n {
                        Mode::Http
                    } else {
                        Mode::HttpSkip(n - k)
                    };
                    &bytes[k..]
                }
                Mode::HttpSkipChunked => self.skip_chunked(bytes, budget),
            };
        }
    }

    /// Looks at the first bytes of a message and picks the mode.
    fn detect<'b>(&mut self, bytes: &'b [u8], budget: &Budget) -> &'b [u8] {
        if self.buf.is_empty() {
            let ws = bytes.iter().take_while(|b| b.is_ascii_whitespace()).count();
            let rest = &bytes[ws..];
            match rest.first() {
                None => return rest,
                Some(b'{') => {
                    self.mode = Mode::Lines;
                    return rest;
                }
                Some(_) => {}
            }
            return self.detect_text(rest, budget);
        }
        self.detect_text(bytes, budget)
    }

    /// Decides from a message's first bytes (see [`STARTS`]), gathering a
    /// few bytes when they are split across segments. Bytes that match no
    /// known start may be anything, a binary preamble a miner sends to hide
    /// its login among them: framing resumes at the next newline.
    fn detect_text<'b>(&mut self, bytes: &'b [u8], budget: &Budget) -> &'b [u8] {
        let mut probe = [0u8; LONGEST_START];
        let held = self.buf.len().min(LONGEST_START);
        probe[..held].copy_from_slice(&self.buf[..held]);
        let take = (LONGEST_START - held).min(bytes.len());
        probe[held..held + take].copy_from_slice(&bytes[..take]);
        let probe = &probe[..held + take];

        if let Some(&(_, mode)) = STARTS.iter().find(|(p, _)| probe.starts_with(p)) {
            self.mode = mode;
            if mode == Mode::Ignore {
                budget.give(self.buf.len());
                self.buf = Vec::new();
                return &[];
            }
            // Bytes gathered while deciding stay in `buf` as the message start.
            return bytes;
        }
        let partial = STARTS.iter().any(|(p, _)| p.starts_with(probe));
        if partial && take == bytes.len() && budget.take(take) {
            self.buf.extend_from_slice(bytes);
            return &[];
        }
        budget.give(self.buf.len());
        self.buf.clear();
        self.mode = Mode::Resync;
        bytes
    }

    fn lines<'b>(
        &mut self,
        bytes: &'b [u8],
        budget: &Budget,
        out: &mut dyn FnMut(Unit<'_>),
    ) -> &'b [u8] {
        let Some(i) = memchr::memchr(b'\n', bytes) else {
            if self.buf.len() + bytes.len() > MAX_LINE || !budget.take(bytes.len()) {
                self.line_too_long(budget);
            } else {
                self.buf.extend_from_slice(bytes);
            }
            return &[];
        };

        let (piece, rest) = (&bytes[..i], &bytes[i + 1..]);
        if self.buf.is_empty() {
            out(Unit::Line(piece));
        } else if self.buf.len() + piece.len() > MAX_LINE {
            self.line_too_long(budget);
            // The newline ends the long line: the next one is a fresh start.
            self.mode = Mode::Lines;
        } else {
            let mut line = std::mem::take(&mut self.buf);
            line.extend_from_slice(piece);
            out(Unit::Line(&line));
            budget.give(line.len() - piece.len());
            line.clear();
            self.buf = line;
        }
        // Lines mode sticks: a stream that started as JSON lines stays one.
        rest
    }

    fn line_too_long(&mut self, budget: &Budget) {
        self.lines_cut += 1;
        budget.give(self.buf.len());
        self.buf = Vec::new();
        self.mode = Mode::Resync;
    }

    fn http<'b>(
        &mut self,
        bytes: &'b [u8],
        budget: &Budget,
        out: &mut dyn FnMut(Unit<'_>),
    ) -> &'b [u8] {
        // Gather up to the cap, then see whether a whole message is there.
        let room = MAX_HTTP_MESSAGE - self.buf.len();
        let take = room.min(bytes.len());
        if !budget.take(take) {
            self.stop(budget);
            return &[];
        }
        self.buf.extend_from_slice(&bytes[..take]);
        let rest = &bytes[take..];

        let Some(head_end) = memmem::find(&self.buf, b"\r\n\r\n").map(|i| i + 4) else {
            if self.buf.len() >= MAX_HTTP_MESSAGE {
                // A head this long is not a getwork client or pool.
                self.lines_cut += 1;
                self.stop(budget);
            }
            return rest;
        };

        let head = &self.buf[..head_end];
        let framing = body_framing(head);
        let avail = self.buf.len() - head_end;
        let (body_len, complete, next_mode) = match framing {
            BodyFraming::Length(n) if n <= avail => (n, true, Mode::Http),
            BodyFraming::Length(n) if self.buf.len() >= MAX_HTTP_MESSAGE => {
                (avail, false, Mode::HttpSkip(n - avail))
            }
            BodyFraming::Length(_) => return rest, // wait for more of the body
            BodyFraming::Chunked => match (
                memmem::find(&self.buf[head_end..], CHUNKED_END),
                dechunk_first(&self.buf[head_end..]),
            ) {
                (Some(end), _) => (end + CHUNKED_END.len(), true, Mode::Http),
                (None, Some(_)) => (avail, true, Mode::HttpSkipChunked),
                (None, None) if self.buf.len() >= MAX_HTTP_MESSAGE => {
                    (avail, false, Mode::HttpSkipChunked)
                }
                (None, None) => return rest,
            },
            BodyFraming::None => (0, true, Mode::Http),
        };

        let mut msg = std::mem::take(&mut self.buf);
        let raw_body = &msg[head_end..head_end + body_len];
        let (body, body_complete) = match framing {
            BodyFraming::Chunked => match dechunk_first(raw_body) {
                Some(b) => (b, complete),
                None => (&raw_body[..0], false),
            },
            _ => (raw_body, complete),
        };
        out(Unit::Http {
            head: &msg[..head_end],
            body,
            body_complete,
        });

        // Keep what followed the message (a pipelined next message). When
        // skipping the rest of a chunked body, the body's last bytes are kept
        // instead, in case the terminator is split across segments.
        let used = head_end + body_len;
        budget.give(used);
        if next_mode == Mode::HttpSkipChunked {
            let keep = &msg[used.saturating_sub(CHUNKED_END.len() - 1).max(head_end)..used];
            self.buf = if budget.take(keep.len()) {
                keep.to_vec()
            } else {
                Vec::new()
            };
        } else {
            msg.drain(..used);
            self.buf = msg;
        }
        self.mode = next_mode;
        if self.mode == Mode::Http && !self.buf.is_empty() {
            // A whole further message may already be gathered; re-enter with
            // no new bytes so it is framed now rather than on the next segment.
            let held = std::mem::take(&mut self.buf);
            budget.give(held.len());
            let mut again = held.as_slice();
            while !again.is_empty() && self.mode == Mode::Http {
                again = self.http(again, budget, out);
            }
        }
        rest
    }

    /// Skips a chunked body up to and including its terminating chunk.
    /// `buf` carries the last few bytes of the previous segment so that a
    /// terminator split across segments is still found.
    fn skip_chunked<'b>(&mut self, bytes: &'b [u8], budget: &Budget) -> &'b [u8] {
        // Known shortcoming: the end of a chunked body is found by its
        // terminator `0\r\n\r\n` rather than by walking the chunk sizes, so a
        // body whose data holds those five bytes ends early. The next message
        // then starts mid-data, is not HTTP, and the direction resyncs.
        let carried = self.buf.len();
        let mut join = self.buf.clone();
        join.extend_from_slice(&bytes[..bytes.len().min(CHUNKED_END.len() - 1)]);
        let end = match memmem::find(&join, CHUNKED_END) {
            Some(i) => Some(i + CHUNKED_END.len() - carried),
            None => memmem::find(bytes, CHUNKED_END).map(|i| i + CHUNKED_END.len()),
        };
        budget.give(carried);
        self.buf.clear();
        match end {
            Some(e) => {
                self.mode = Mode::Http;
                &bytes[e..]
            }
            None => {
                join.extend_from_slice(bytes);
                let keep = &join[join.len().saturating_sub(CHUNKED_END.len() - 1)..];
                if budget.take(keep.len()) {
                    self.buf.extend_from_slice(keep);
                }
                &[]
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyFraming {
    Length(usize),
    Chunked,
    None,
}

/// How the body after `head` is delimited, read with httparse.
fn body_framing(head: &[u8]) -> BodyFraming {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let parsed: Option<&[httparse::Header<'_>]> = if head.starts_with(b"HTTP/") {
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(head) {
            Ok(_) => Some(r.headers),
            Err(_) => None,
        }
    } else {
        let mut r = httparse::Request::new(&mut headers);
        match r.parse(head) {
            Ok(_) => Some(r.headers),
            Err(_) => None,
        }
    };
    let Some(headers) = parsed else {
        return BodyFraming::None;
    };
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding")
            && h.value
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"chunked"))
        {
            return BodyFraming::Chunked;
        }
    }
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            return n.map_or(BodyFraming::None, BodyFraming::Length);
        }
    }
    BodyFraming::None
}

/// The data of the first chunk of a chunked body, once it is all there.
fn dechunk_first(body: &[u8]) -> Option<&[u8]> {
    let eol = memmem::find(body, b"\r\n")?;
    let size_text = std::str::from_utf8(&body[..eol]).ok()?;
    let size_text = size_text.split(';').next()?.trim();
    let size = usize::from_str_radix(size_text, 16).ok()?;
    let start = eol + 2;
    let end = start.checked_add(size)?;
    (end <= body.len()).then(|| &body[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames `stream` delivered in pieces cut at `cuts`, and returns the units.
    fn frame(stream: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut f = Framer::new();
        let b = Budget::default();
        let mut units = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
            let c = c.min(stream.len()).max(prev);
            f.push(&stream[prev..c], &b, &mut |u| {
                units.push(match u {
                    Unit::Line(l) => format!("L:{}", String::from_utf8_lossy(l)),
                    Unit::Http {
                        head,
                        body,
                        body_complete,
                    } => format!(
                        "H:{}|{}|{}",
                        String::from_utf8_lossy(head).lines().next().unwrap_or(""),
                        String::from_utf8_lossy(body),
                        body_complete
                    ),
                })
            });
            prev = c;
        }
        units
    }

    const SESSION: &[u8] = b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"w\",\"x\"]}\n";

    #[test]
    fn every_cut_of_a_session_gives_the_same_lines() {
        let whole = frame(SESSION, &[]);
        assert_eq!(whole.len(), 2);
        for i in 0..=SESSION.len() {
            assert_eq!(frame(SESSION, &[i]), whole, "cut at {i}");
            for j in i..=SESSION.len() {
                assert_eq!(frame(SESSION, &[i, j]), whole, "cuts at {i},{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte_delivery_gives_the_same_lines() {
        let cuts: Vec<usize> = (1..SESSION.len()).collect();
        assert_eq!(frame(SESSION, &cuts), frame(SESSION, &[]));
    }

    #[test]
    fn a_stream_joined_mid_line_resyncs_at_the_next_newline() {
        let s = b"d\":[1,2]}\n{\"id\":3,\"method\":\"mining.submit\"}\n";
        assert_eq!(
            frame(s, &[]),
            vec!["L:{\"id\":3,\"method\":\"mining.submit\"}"]
        );
    }

    #[test]
    fn binary_stream_start_is_ignored() {
        let mut f = Framer::new();
        f.push(
            &[0x16, 0x03, 0x01, 0x02, 0x00],
            &Budget::default(),
            &mut |_| panic!("no units"),
        );
        assert!(f.is_ignoring());
    }

    #[test]
    fn a_binary_preamble_before_the_login_is_skipped_to_the_next_newline() {
        let s = b"\x00\x01junk\xff\n{\"id\":1,\"method\":\"login\"}\n";
        for i in 0..=s.len() {
            assert_eq!(
                frame(s, &[i]),
                vec!["L:{\"id\":1,\"method\":\"login\"}"],
                "cut at {i}"
            );
        }
    }

    #[test]
    fn an_http_get_is_ignored_even_when_split_inside_the_method() {
        for i in 0..4 {
            let mut f = Framer::new();
            let b = Budget::default();
            let req = b"GET /?q={\"method\":\"mining.subscribe\"}\n HTTP/1.1\r\n\r\n";
            f.push(&req[..i], &b, &mut |_| panic!("no units"));
            f.push(&req[i..], &b, &mut |_| panic!("no units"));
            assert!(f.is_ignoring());
        }
    }

    #[test]
    fn an_endless_line_is_cut_at_the_cap_and_counted() {
        let mut f = Framer::new();
        let b = Budget::default();
        let mut n = 0;
        f.push(b"{", &b, &mut |_| n += 1);
        for _ in 0..10_000 {
            f.push(&[b'a'; 1024], &b, &mut |_| n += 1);
            assert!(f.held() <= MAX_LINE);
        }
        assert_eq!(f.lines_cut, 1);
        assert_eq!(n, 0);
        assert_eq!(b.held(), 0);
        // The next newline brings framing back.
        f.push(b"\n{\"a\":1}\n", &b, &mut |_| n += 1);
        assert_eq!(n, 1);
    }

    #[test]
    fn http_post_with_content_length_is_one_unit_in_any_cut() {
        let body = b"{\"method\": \"getwork\", \"params\": [], \"id\":0}";
        let msg = [
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
            body.as_slice(),
        ]
        .concat();
        let two = [msg.clone(), msg.clone()].concat();
        let want = frame(&two, &[]);
        assert_eq!(want.len(), 2);
        assert!(
            want[0].contains("getwork") && want[0].ends_with("|true"),
            "{want:?}"
        );
        for i in 0..=two.len() {
            assert_eq!(frame(&two, &[i]), want, "cut at {i}");
        }
    }

    #[test]
    fn chunked_http_response_yields_its_first_chunk() {
        let msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let units = frame(msg, &[]);
        assert_eq!(
            units,
            vec![
                "H:HTTP/1.1 200 OK|{\"a\":1}|true",
                "H:HTTP/1.1 200 OK|{}|true"
            ]
        );
        for i in 0..=msg.len() {
            assert_eq!(frame(msg, &[i]), units, "cut at {i}");
        }
    }

    #[test]
    fn a_long_http_body_is_cut_and_the_next_message_still_framed() {
        let big = vec![b'x'; 3 * MAX_HTTP_MESSAGE];
        let mut msg =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes();
        msg.extend_from_slice(&big);
        msg.extend_from_slice(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
        let units = frame(&msg, &[1000, 20000, 40000]);
        assert_eq!(
            units.len(),
            2,
            "{:?}",
            units.iter().map(|u| u.len()).collect::<Vec<_>>()
        );
        assert!(units[0].ends_with("|false"));
        assert_eq!(units[1], "H:POST / HTTP/1.1|{}|true");
    }
}
