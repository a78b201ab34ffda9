//! Whisper's rules for which token may come next (openai-whisper's `SuppressBlank`,
//! `SuppressTokens` and `ApplyTimestampRules`), applied to one step's logits on the host.

/// The token ids the rules need.
#[derive(Clone, Debug)]
pub struct Specials {
    /// End of transcript, `<|endoftext|>`.
    pub eot: u32,
    /// Start of transcript, `<|startoftranscript|>`.
    pub sot: u32,
    /// `<|transcribe|>`: the task token for same-language text.
    pub transcribe: u32,
    /// `<|translate|>`: the task token for English translation.
    pub translate: u32,
    /// `<|notimestamps|>`: decode without timestamps.
    pub no_timestamps: u32,
    /// `<|0.00|>`; every id from here up is a timestamp, 0.02 s apart.
    pub timestamp_begin: u32,
    /// Suppressed at every step (non-speech symbols, the task and start tokens).
    pub suppress: Vec<u32>,
    /// Suppressed at the first sampled step (a blank and end-of-text).
    pub begin_suppress: Vec<u32>,
}

/// Seconds between timestamp tokens.
pub const TIME_PRECISION: f64 = 0.02;
/// The first timestamp may be at most this late (openai-whisper's default).
const MAX_INITIAL_TIMESTAMP: f64 = 1.0;

/// Mask `logits` (one step's, over the vocabulary) for the step after `sampled`, the tokens
/// sampled so far in this window (the prompt excluded).
pub fn apply(logits: &mut [f32], sampled: &[u32], s: &Specials, timestamps: bool) {
    let ban = |logits: &mut [f32], range: std::ops::Range<usize>| {
        let end = range.end.min(logits.len());
        for l in &mut logits[range.start.min(end)..end] {
            *l = f32::NEG_INFINITY;
        }
    };
    let one = |logits: &mut [f32], id: u32| {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = f32::NEG_INFINITY;
        }
    };
    if sampled.is_empty() {
        for &id in &s.begin_suppress {
            one(logits, id);
        }
    }
    for &id in &s.suppress {
        one(logits, id);
    }
    if !timestamps {
        return;
    }
    let (tb, eot, n) = (s.timestamp_begin as usize, s.eot as usize, logits.len());
    one(logits, s.no_timestamps);
    let is_ts = |t: u32| t as usize >= tb;
    let last_ts = sampled.last().is_some_and(|&t| is_ts(t));
    let penult_ts = sampled.len() < 2 || is_ts(sampled[sampled.len() - 2]);
    if last_ts {
        match penult_ts {
            true => ban(logits, tb..n), // a pair just closed: text (or the end) next
            false => ban(logits, 0..eot), // an open pair: its closing timestamp, or the end
        }
    }
    // Timestamps never go back; after a closed pair, not even to the same time.
    if let Some(&last) = sampled.iter().rev().find(|&&t| is_ts(t)) {
        let floor = if last_ts && !penult_ts {
            last
        } else {
            last + 1
        };
        ban(logits, tb..floor as usize);
    }
    if sampled.is_empty() {
        ban(logits, 0..tb);
        let latest = tb + (MAX_INITIAL_TIMESTAMP / TIME_PRECISION).round() as usize;
        ban(logits, latest + 1..n);
    }
    // Where timestamps together are likelier than any one text token, take a timestamp.
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max.is_finite() {
        let lse = |xs: &[f32]| -> f64 {
            let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if !m.is_finite() {
                return f64::NEG_INFINITY;
            }
            let sum: f64 = xs.iter().map(|&x| f64::from(x - m).exp()).sum();
            f64::from(m) + sum.ln()
        };
        let tb = tb.min(n);
        let timestamp_mass = lse(&logits[tb..]);
        let best_text = logits[..tb]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        if timestamp_mass > f64::from(best_text) {
            ban(logits, 0..tb);
        }
    }
}

/// The highest logit's token (the lowest id among equals), and the gap to the runner-up.
pub fn greedy(logits: &[f32]) -> (u32, f32) {
    let mut best = (0usize, f32::NEG_INFINITY);
    let mut second = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        if l > best.1 {
            second = best.1;
            best = (i, l);
        } else if l > second {
            second = l;
        }
    }
    (best.0 as u32, best.1 - second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials() -> Specials {
        // A vocabulary of 20: text 0..10, eot 10, sot 11, translate 12, transcribe 13,
        // no timestamps 14, timestamps 15..20.
        Specials {
            eot: 10,
            sot: 11,
            transcribe: 13,
            translate: 12,
            no_timestamps: 14,
            timestamp_begin: 15,
            suppress: vec![11, 12, 13],
            begin_suppress: vec![0, 10],
        }
    }

    fn allowed(logits: &[f32]) -> Vec<usize> {
        (0..logits.len())
            .filter(|&i| logits[i].is_finite())
            .collect()
    }

    #[test]
    fn without_timestamps_only_the_lists_are_suppressed() {
        let s = specials();
        let mut l = vec![0.0f32; 20];
        apply(&mut l, &[], &s, false);
        assert_eq!(
            allowed(&l),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15, 16, 17, 18, 19]
        );
        let mut l = vec![0.0f32; 20];
        apply(&mut l, &[3], &s, false);
        assert!(l[0].is_finite() && l[10].is_finite() && l[12] == f32::NEG_INFINITY);
    }

    #[test]
    fn timestamps_come_in_order_and_in_pairs() {
        let s = specials();
        // First step: only a timestamp, and at most 1 s in (all 5 of this tiny range).
        let mut l = vec![0.0f32; 20];
        apply(&mut l, &[], &s, true);
        assert_eq!(allowed(&l), [15, 16, 17, 18, 19]);
        // After an opening timestamp and text, text is free, and a later timestamp.
        let mut l = vec![0.0f32; 20];
        l[1] = 10.0; // text far likelier than any timestamp
        apply(&mut l, &[16, 3], &s, true);
        assert_eq!(allowed(&l), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 18, 19]);
        // An open pair (text, then one timestamp) must close: a timestamp at or after it,
        // or the end (which loses here to the timestamps' joint mass: 3 of 4 equal logits).
        let mut l = vec![0.0f32; 20];
        l[10] = 1.5;
        apply(&mut l, &[15, 3, 17], &s, true);
        assert_eq!(allowed(&l), [10, 17, 18, 19]);
        let mut l = vec![0.0f32; 20];
        apply(&mut l, &[15, 3, 17], &s, true);
        assert_eq!(allowed(&l), [17, 18, 19]);
        // A closed pair: text or the end, no timestamp.
        let mut l = vec![0.0f32; 20];
        l[2] = 5.0;
        apply(&mut l, &[15, 3, 17, 17], &s, true);
        assert_eq!(allowed(&l), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn likely_timestamps_beat_a_text_token() {
        let s = specials();
        // Text's best is 1.0; the four timestamps still allowed, at 0.0, hold more mass
        // (ln 4 > 1).
        let mut l = vec![-10.0f32; 20];
        l[4] = 1.0;
        for t in &mut l[15..20] {
            *t = 0.0;
        }
        apply(&mut l, &[15, 3], &s, true);
        assert_eq!(allowed(&l), [16, 17, 18, 19]);
        assert_eq!(greedy(&l).0, 16);
        // At 1.5, text wins (ln 4 < 1.5).
        let mut l = vec![-10.0f32; 20];
        l[4] = 1.5;
        for t in &mut l[15..20] {
            *t = 0.0;
        }
        apply(&mut l, &[15, 3], &s, true);
        assert_eq!(greedy(&l).0, 4);
    }

    #[test]
    fn greedy_takes_the_first_best_and_its_margin() {
        assert_eq!(greedy(&[1.0, 3.0, 2.5, 3.0]), (1, 0.0));
        assert_eq!(greedy(&[4.0, 1.0, 2.5]), (0, 1.5));
    }
}
