//! The mix's plan: the chats (direct, small and big groups) and which client sends what,
//! drawn from a seeded generator so a run can be repeated.

/// What kind of conversation a chat is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Two users.
    Direct,
    /// A group of 10.
    Group10,
    /// A group of 257 (the largest allowed).
    Group257,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Direct => "one-to-one",
            Kind::Group10 => "group of 10",
            Kind::Group257 => "group of 257",
        }
    }
}

/// A conversation of the mix.
#[derive(Debug, Clone)]
pub struct Chat {
    /// Its session id.
    pub id: String,
    /// Client indexes of its members.
    pub members: Vec<usize>,
    /// Its kind.
    pub kind: Kind,
}

/// One planned message: who sends, where, and whether it attaches a media upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Index into the chats.
    pub chat: usize,
    /// Client index of the sender.
    pub sender: usize,
    /// Attach a freshly uploaded media object.
    pub media: bool,
}

/// A small deterministic generator (xorshift64*), so a run's plan can be repeated by `--seed`.
pub struct Rng(u64);

impl Rng {
    /// Seeded (0 is replaced: xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Who is in which conversation, for `clients` clients: pairs (2k, 2k+1); groups of 10 over
/// consecutive clients; `big` groups of 257 over clients 0..257, 257..514, ... Every client is in
/// one pair and one group of 10 (a remainder of fewer than 10 forms no group).
pub fn topology(clients: usize, big: usize) -> Vec<(Kind, Vec<usize>)> {
    let mut out = Vec::new();
    for p in 0..clients / 2 {
        out.push((Kind::Direct, vec![2 * p, 2 * p + 1]));
    }
    for g in 0..clients / 10 {
        out.push((Kind::Group10, (10 * g..10 * g + 10).collect()));
    }
    for b in 0..big {
        out.push((Kind::Group257, (257 * b..257 * b + 257).collect()));
    }
    out
}

/// The shares of the message mix.
#[derive(Debug, Clone, Copy)]
pub struct Shares {
    /// Share of messages to groups of 10.
    pub group10: f64,
    /// Share of messages to groups of 257.
    pub group257: f64,
    /// Share of messages that attach an uploaded media object.
    pub media: f64,
}

/// `n` messages: a kind by the shares, a chat of that kind and a sender among its members,
/// uniformly.
pub fn plan(chats: &[(Kind, Vec<usize>)], n: u64, shares: Shares, rng: &mut Rng) -> Vec<Planned> {
    let of = |k: Kind| -> Vec<usize> {
        chats
            .iter()
            .enumerate()
            .filter(|(_, c)| c.0 == k)
            .map(|(i, _)| i)
            .collect()
    };
    let (direct, g10, g257) = (of(Kind::Direct), of(Kind::Group10), of(Kind::Group257));
    (0..n)
        .map(|_| {
            let r = rng.unit();
            let pool = if r < shares.group257 && !g257.is_empty() {
                &g257
            } else if r < shares.group257 + shares.group10 && !g10.is_empty() {
                &g10
            } else {
                &direct
            };
            let chat = pool[rng.below(pool.len())];
            let members = &chats[chat].1;
            Planned {
                chat,
                sender: members[rng.below(members.len())],
                media: rng.unit() < shares.media,
            }
        })
        .collect()
}
