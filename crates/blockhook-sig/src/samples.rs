//! Sample payloads of the four built-in event types, as the contract shows them (section 4):
//! what a test-send posts, what `blockhook send` sends without a body, what the docs show. One
//! copy, so the dashboard, the API and the CLI send the same bytes.

/// `Payment` sample of contract section 4.
pub const PAYMENT: &str = r#"{"custNo":"CustNo_00240101","orderNo":"OrderNo_202504010023","id":8210003616,"symbol":"USDT","amount":"2000.00","status":"SUCCESS","txId":"0x7614a9840d9422feaef4671e0ee98dd7092ebcba6e41076285f99d0b2b0de5fe","network":"Ethereum","chainId":"1","fromAddress":"0xa9e358e33a57e67c9b84618a52f0194c345c8e35","cashierId":86100021}"#;
/// `Payout` sample of contract section 4.
pub const PAYOUT: &str = r#"{"custNo":"CustNo_2022140101","bizOrderNo":"B202505220012","id":8210003616,"symbol":"USDT","amount":"2000.00","status":"SUCCESS","txId":"0x7614a9840d9422feaef4671e0ee98dd7092ebcba6e41076285f99d0b2b0de5fe","network":"Ethereum","chainId":"1","fromAddress":"0xa9e358e33a57e67c9b84618a52f0194c345c8e35","toAddress":"0xa9e358E33a57E67c9B84618a52f0194C345C8e35","fee":"2","gasAmount":"1","type":1,"createTime":1693212861016,"contractId":200910,"blockTime":1693212861016}"#;
/// `QR-Payment`: a payment through the QR-code model (`orderType` 2, legacy numeric status 9).
pub const QR_PAYMENT: &str = r#"{"custNo":"CustNo_00240101","orderNo":"OrderNo_202504010024","id":8210003617,"symbol":"USDT","amount":"13.410037","status":9,"orderType":2,"txId":"0xf3d879bad10f4cfe481d9e53538a0889c04c0973dfff82797ef7604143fc9984","network":"Ethereum","chainId":"1","fromAddress":"0xa9e358e33a57e67c9b84618a52f0194c345c8e35","cashierId":86100021,"blockTime":1693212861016}"#;
/// `QR-Payout`: a legacy batch payout with its nested `detailList` (the contract's nested vector).
pub const QR_PAYOUT: &str = r#"{"blockId":"10168195","chainId":"5","contractAddress":"0x57609702e66d6dee9d1f3a9fab376b95b9ec9e02","detailList":[{"amount":"1.00000000","orderNo":"TX1","symbol":"USDT","toAddress":"0x2d7ff2dc166ae09542c749be052028e43825cde7","tokenAddress":"0x92efdfa35c75b259375ebe0f84ee1d95db0489b6"},{"amount":"1.00000000","orderNo":"TX2","symbol":"USDC","toAddress":"0x2d7ff2dc166ae09542c749be052028e43825cde7","tokenAddress":"0x2f96275bbb4a54714ef0251226c42811fb9f98aa"}],"fromAddress":"0x8e5df55ac224db7424fa8536eda9356f44474936","merchantId":20,"network":"ETH","txId":"0xa85f090dc5e722177ddc2cd2d4d87467820635cf736ec1a5910997118e3d3cb6"}"#;

/// The sample of a built-in event type (`Payment`, `Payout`, `QR-Payment`, `QR-Payout`), compared
/// case-insensitively like receivers do; `None` for any other type.
pub fn for_event(event_type: &str) -> Option<&'static str> {
    [
        ("Payment", PAYMENT),
        ("Payout", PAYOUT),
        ("QR-Payment", QR_PAYMENT),
        ("QR-Payout", QR_PAYOUT),
    ]
    .into_iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(event_type))
    .map(|(_, sample)| sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_a_json_object_and_found_by_any_case() {
        for name in ["Payment", "payout", "QR-PAYMENT", "qr-payout"] {
            let sample = for_event(name).unwrap_or_default();
            assert!(crate::canonical(sample.as_bytes()).is_ok(), "{name}");
            assert!(sample.starts_with('{'), "{name}");
        }
        assert_eq!(for_event("Refund"), None);
    }
}
