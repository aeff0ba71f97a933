//! The Redis backend of the limiter: one atomic script decides every policy of a request.

use std::time::Duration;

use redis::Script;

use crate::kv::Kv;

use super::{gcra::Decision, policy::Policy, verdict::LimitKey};

/// GCRA in microseconds on Redis's own clock (so instances with skewed clocks agree). Lua numbers
/// are doubles: microseconds since 1970 stay exact (below 2^53) until the year 2255.
/// ARGV holds `interval, window, enforced` per key; the reply holds `allowed, remaining, ms`
/// per key (times in microseconds). Nothing is spent when an enforced policy refuses.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out, writes, refused = {}, {}, false
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local window = tonumber(ARGV[3 * i - 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local ahead = new_tat - now
  if ahead > window then
    if ARGV[3 * i] == '1' then refused = true end
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = ahead - window
  else
    writes[#writes + 1] = {key, new_tat, ahead}
    out[#out + 1] = 1
    out[#out + 1] = math.floor((window - ahead) / interval)
    out[#out + 1] = ahead
  end
end
if not refused then
  for _, w in ipairs(writes) do
    redis.call('SET', w[1], string.format('%d', w[2]), 'PX', math.max(1, math.ceil(w[3] / 1000)))
  end
end
return out
";

/// Limits kept in Redis under `prefix`.
pub struct RedisLimiter {
    kv: Kv,
    prefix: String,
    timeout: Duration,
    script: Script,
}

impl RedisLimiter {
    /// A limiter writing keys `<prefix>rl:<policy>:<key>`, waiting at most `timeout` per check.
    pub fn new(kv: Kv, prefix: &str, timeout: Duration) -> Self {
        Self {
            kv,
            prefix: prefix.to_owned(),
            timeout,
            script: Script::new(GCRA_LUA),
        }
    }

    /// Whether Redis is known to be down (its circuit is open).
    pub fn circuit_open(&self) -> bool {
        self.kv.is_open()
    }

    /// Times the circuit opened since start.
    pub fn circuit_trips(&self) -> u64 {
        self.kv.trips()
    }

    /// Decides one request against each policy, atomically.
    pub async fn check(
        &self,
        policies: &[&Policy],
        key: &LimitKey,
    ) -> anyhow::Result<Vec<Decision>> {
        let mut invocation = self.script.prepare_invoke();
        for p in policies {
            // Microseconds, so quotas above 1000 per second per key keep their exact rate.
            let window = p.quota.window_secs * 1_000_000;
            invocation
                .key(format!("{}rl:{}:{key}", self.prefix, p.name))
                .arg((window / p.quota.limit).max(1))
                .arg(window)
                .arg(u8::from(p.mode == super::policy::Mode::Enforce));
        }
        // Fails at once while Redis is known to be down (see `Kv`): requests then fall back
        // without waiting out the timeout each.
        let reply: Vec<i64> = self
            .kv
            .run(self.timeout, |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        anyhow::ensure!(
            reply.len() == policies.len() * 3,
            "unexpected reply from the rate-limit script"
        );
        Ok(reply
            .chunks(3)
            .map(|c| Decision {
                allowed: c[0] == 1,
                remaining: c[1].max(0) as u64,
                reset_secs: (c[2].max(0) as u64)
                    .div_ceil(1_000_000)
                    .max(u64::from(c[0] != 1)),
            })
            .collect())
    }
}
