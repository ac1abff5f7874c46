//! Message texts for the crafted sessions, shaped like what real miners and
//! pools send (field order, spacing, id styles) but with made-up values.
//!
//! Hex fields come from a fixed-seed generator so every run gives the same
//! bytes; their lengths match the real fields (64 hex digits for a hash, 8
//! for a nonce, 152 for a RandomX blob, ...).

/// xorshift64*: tiny, deterministic, good enough to make hex look random.
pub struct Filler(u64);

impl Filler {
    pub fn new(seed: u64) -> Filler {
        Filler(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `digits` lowercase hex digits.
    pub fn hex(&mut self, digits: usize) -> String {
        const HEX: &[u8] = b"0123456789abcdef";
        (0..digits)
            .map(|_| HEX[(self.next() % 16) as usize] as char)
            .collect()
    }

    /// A string over the base58 alphabet, as wallet addresses are written.
    pub fn base58(&mut self, len: usize) -> String {
        const B58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
        (0..len)
            .map(|_| B58[(self.next() % 58) as usize] as char)
            .collect()
    }
}

/// Bitcoin-style Stratum v1 as cgminer and a typical pool write it.
pub mod v1 {
    use super::Filler;

    pub fn subscribe(id: u32, agent: &str) -> String {
        format!("{{\"id\": {id}, \"method\": \"mining.subscribe\", \"params\": [\"{agent}\"]}}\n")
    }

    pub fn subscribe_result(f: &mut Filler, id: u32) -> String {
        format!(
            "{{\"id\":{id},\"result\":[[[\"mining.set_difficulty\",\"{}\"],[\"mining.notify\",\"{}\"]],\"{}\",4],\"error\":null}}\n",
            f.hex(32),
            f.hex(32),
            f.hex(8)
        )
    }

    pub fn authorize(id: u32, worker: &str) -> String {
        format!("{{\"id\": {id}, \"method\": \"mining.authorize\", \"params\": [\"{worker}\", \"x\"]}}\n")
    }

    pub fn result_true(id: u32) -> String {
        format!("{{\"id\":{id},\"result\":true,\"error\":null}}\n")
    }

    pub fn set_difficulty(diff: u32) -> String {
        format!("{{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[{diff}]}}\n")
    }

    pub fn notify(f: &mut Filler, job: &str, ntime: &str, clean: bool) -> String {
        let coinb1 = format!(
            "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4b03{}",
            f.hex(70)
        );
        let coinb2 = format!("ffffffff02{}", f.hex(110));
        format!(
            "{{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"{job}\",\"{}\",\"{coinb1}\",\"{coinb2}\",[\"{}\",\"{}\",\"{}\"],\"20000000\",\"17034219\",\"{ntime}\",{clean}]}}\n",
            f.hex(64),
            f.hex(64),
            f.hex(64),
            f.hex(64)
        )
    }

    pub fn submit(f: &mut Filler, id: u32, worker: &str, job: &str, ntime: &str) -> String {
        format!(
            "{{\"params\": [\"{worker}\", \"{job}\", \"{}\", \"{ntime}\", \"{}\"], \"id\": {id}, \"method\": \"mining.submit\"}}\n",
            f.hex(8),
            f.hex(8)
        )
    }
}

/// XMRig speaking the CryptoNote/Monero pool protocol.
pub mod cryptonote {
    use super::Filler;

    pub const AGENT: &str = "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/11.4.0";

    pub fn wallet(f: &mut Filler) -> String {
        format!("4{}", f.base58(94))
    }

    pub fn login(id: u32, wallet: &str) -> String {
        format!(
            "{{\"id\":{id},\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{{\"login\":\"{wallet}\",\"pass\":\"x\",\"agent\":\"{AGENT}\",\"rigid\":\"\",\"algo\":[\"rx/0\"]}}}}\n"
        )
    }

    fn job_fields(f: &mut Filler, job_id: &str, height: u32, seed: &str) -> String {
        format!(
            "\"blob\":\"1010{}\",\"job_id\":\"{job_id}\",\"target\":\"b88d0600\",\"algo\":\"rx/0\",\"height\":{height},\"seed_hash\":\"{seed}\"",
            f.hex(148)
        )
    }

    pub fn login_result(
        f: &mut Filler,
        id: u32,
        session: &str,
        job_id: &str,
        seed: &str,
    ) -> String {
        let job = job_fields(f, job_id, 3_112_345, seed);
        format!(
            "{{\"id\":{id},\"jsonrpc\":\"2.0\",\"error\":null,\"result\":{{\"id\":\"{session}\",\"job\":{{{job}}},\"extensions\":[\"algo\",\"nicehash\",\"connect\",\"tls\",\"keepalive\"],\"status\":\"OK\"}}}}\n"
        )
    }

    pub fn job(f: &mut Filler, job_id: &str, seed: &str) -> String {
        let job = job_fields(f, job_id, 3_112_346, seed);
        format!("{{\"jsonrpc\":\"2.0\",\"method\":\"job\",\"params\":{{{job}}}}}\n")
    }

    pub fn submit(f: &mut Filler, id: u32, session: &str, job_id: &str) -> String {
        format!(
            "{{\"id\":{id},\"jsonrpc\":\"2.0\",\"method\":\"submit\",\"params\":{{\"id\":\"{session}\",\"job_id\":\"{job_id}\",\"nonce\":\"{}\",\"result\":\"{}\"}}}}\n",
            f.hex(8),
            f.hex(64)
        )
    }

    pub fn status(id: u32, status: &str) -> String {
        format!("{{\"id\":{id},\"jsonrpc\":\"2.0\",\"error\":null,\"result\":{{\"status\":\"{status}\"}}}}\n")
    }

    pub fn keepalived(id: u32, session: &str) -> String {
        format!("{{\"id\":{id},\"jsonrpc\":\"2.0\",\"method\":\"keepalived\",\"params\":{{\"id\":\"{session}\"}}}}\n")
    }
}

/// Ethereum: the eth-proxy protocol (raw TCP) and EthereumStratum/1.0.0.
pub mod eth {
    use super::Filler;

    pub fn address(f: &mut Filler) -> String {
        format!("0x{}", f.hex(40))
    }

    pub fn work(f: &mut Filler) -> String {
        format!(
            "[\"0x{}\",\"0x{}\",\"0x00000000{}\"]",
            f.hex(64),
            f.hex(64),
            f.hex(56)
        )
    }

    pub fn proxy_request(id: u32, worker: &str, method: &str, params: &str) -> String {
        format!(
            "{{\"worker\": \"{worker}\", \"jsonrpc\": \"2.0\", \"params\": {params}, \"id\": {id}, \"method\": \"{method}\"}}\n"
        )
    }

    pub fn proxy_result(id: u32, result: &str) -> String {
        format!("{{\"id\":{id},\"jsonrpc\":\"2.0\",\"result\":{result}}}\n")
    }

    pub fn nh_subscribe(id: u32, agent: &str) -> String {
        format!(
            "{{\"id\": {id}, \"method\": \"mining.subscribe\", \"params\": [\"{agent}\", \"EthereumStratum/1.0.0\"]}}\n"
        )
    }

    pub fn nh_subscribe_result(f: &mut Filler, id: u32, extranonce: &str) -> String {
        format!(
            "{{\"id\":{id},\"result\":[[\"mining.notify\",\"{}\",\"EthereumStratum/1.0.0\"],\"{extranonce}\"],\"error\":null}}\n",
            f.hex(32)
        )
    }

    pub fn nh_notify(f: &mut Filler, job: &str) -> String {
        format!(
            "{{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"{job}\",\"{}\",\"{}\",true]}}\n",
            f.hex(64),
            f.hex(64)
        )
    }
}
