//! Signing and verifying a typical ~400-byte `Payment` event, in both modes.
//!
//! Run: `cargo bench -p blockhook-sig --bench sign -- --warm-up-time 1 --measurement-time 3`.
//! Each iteration is one operation, so criterion's `thrpt` line reads as operations per second.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use blockhook_sig::v2::Signer;
use blockhook_sig::{Mode, VerifyMode, VerifyOptions, canonical, sign, verify_parts};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The contract's Payment example (section 4) plus `orderType` and `blockTime`, keys unsorted.
const PAYMENT: &[u8] = br#"{"custNo":"CustNo_00240101","orderNo":"OrderNo_202504010023","id":8210003616,"symbol":"USDT","amount":"2000.00","status":"SUCCESS","txId":"0x7614a9840d9422feaef4671e0ee98dd7092ebcba6e41076285f99d0b2b0de5fe","network":"Ethereum","chainId":"1","fromAddress":"0xa9e358e33a57e67c9b84618a52f0194c345c8e35","cashierId":86100021,"orderType":1,"blockTime":1743060268000}"#;
const SECRET: &[u8] = b"sck_QOoPSlHDSsgXYeNyTP2i0ug1HKLRjHw9Ug7mCc1Q0";
const T: u64 = 1_743_060_268_000;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("payment-{}B", PAYMENT.len()));
    group.throughput(Throughput::Elements(1));

    for mode in [Mode::Sorted, Mode::Raw] {
        group.bench_function(format!("sign/{mode}"), |b| {
            b.iter(|| sign(black_box(SECRET), mode, black_box(PAYMENT), black_box(T)).unwrap())
        });
        let signer = Signer::new(SECRET).unwrap();
        group.bench_function(format!("sign-keyed/{mode}"), |b| {
            b.iter(|| signer.sign(mode, black_box(PAYMENT), black_box(T)).unwrap())
        });
        let signature = sign(SECRET, mode, PAYMENT, T).unwrap().to_string();
        let time = T.to_string();
        let opts = VerifyOptions {
            mode: mode.into(),
            ..VerifyOptions::default()
        };
        group.bench_function(format!("verify/{mode}"), |b| {
            b.iter(|| {
                verify_parts(
                    &time,
                    black_box(&signature),
                    black_box(PAYMENT),
                    &[SECRET],
                    &opts,
                    T + 1_000,
                )
                .unwrap()
            })
        });
    }
    let signature = sign(SECRET, Mode::Raw, PAYMENT, T).unwrap().to_string();
    let either = VerifyOptions {
        mode: VerifyMode::Either,
        ..VerifyOptions::default()
    };
    group.bench_function("verify/either-matching-raw", |b| {
        b.iter(|| {
            verify_parts(
                "1743060268000",
                black_box(&signature),
                black_box(PAYMENT),
                &[SECRET],
                &either,
                T,
            )
            .unwrap()
        })
    });
    group.bench_function("canonical", |b| {
        b.iter(|| canonical(black_box(PAYMENT)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
