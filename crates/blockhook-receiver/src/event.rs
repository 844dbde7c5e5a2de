//! The event type of a webhook (`BlockATM-Event`), compared case-insensitively.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// The kind of event a webhook announces, parsed from `BlockATM-Event`.
///
/// Parsing forgives case and separators, as the contract asks receivers to: `Payment`,
/// `payment`, `PAYMENT` and `payment.success` are all [`EventKind::Payment`]; `QR-Payment`,
/// `qr_payment` and `QrPayment` are [`EventKind::QrPayment`]. Anything else is kept verbatim
/// in [`EventKind::Other`] (operators may define their own types): answer `200` to those too,
/// or they will be retried.
///
/// ```
/// use blockhook_receiver::EventKind;
/// assert_eq!(EventKind::parse("payment.success"), EventKind::Payment);
/// assert_eq!(EventKind::parse("qr_payout"), EventKind::QrPayout);
/// assert_eq!(EventKind::parse("Refund"), EventKind::Other("Refund".into()));
/// assert_eq!(EventKind::QrPayment.to_string(), "QR-Payment");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `Payment`: a collection (cashier) order changed status.
    Payment,
    /// `Payout`: a payout order completed (succeeded or was refused).
    Payout,
    /// `QR-Payment` (legacy): a payment received through the QR-code model.
    QrPayment,
    /// `QR-Payout` (legacy): a QR-code payout result was generated.
    QrPayout,
    /// Any other event type, exactly as received (empty if the header was absent).
    Other(String),
}

impl EventKind {
    /// Parses an event type; never fails (unknown types become [`EventKind::Other`]).
    ///
    /// The part before the first `.` is compared with ASCII case ignored and `-`, `_` and
    /// spaces removed, so `payment.success` is a `Payment`.
    pub fn parse(raw: &str) -> Self {
        let head = raw.trim().split('.').next().unwrap_or_default();
        let folded: String = head
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match folded.as_str() {
            "payment" => Self::Payment,
            "payout" => Self::Payout,
            "qrpayment" => Self::QrPayment,
            "qrpayout" => Self::QrPayout,
            _ => Self::Other(raw.to_owned()),
        }
    }

    /// The contract's spelling (`Payment`, `Payout`, `QR-Payment`, `QR-Payout`), or the
    /// received text for [`EventKind::Other`].
    pub fn as_str(&self) -> &str {
        match self {
            Self::Payment => "Payment",
            Self::Payout => "Payout",
            Self::QrPayment => "QR-Payment",
            Self::QrPayout => "QR-Payout",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

impl From<&str> for EventKind {
    fn from(s: &str) -> Self {
        Self::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn built_in_kinds_in_every_spelling() {
        let cases = [
            (
                EventKind::Payment,
                &[
                    "Payment",
                    "payment",
                    "PAYMENT",
                    "payment.success",
                    " Payment ",
                ][..],
            ),
            (
                EventKind::Payout,
                &["Payout", "payout", "PAYOUT", "payout.refuse"],
            ),
            (
                EventKind::QrPayment,
                &[
                    "QR-Payment",
                    "qr_payment",
                    "qr-payment",
                    "QrPayment",
                    "QR PAYMENT",
                ],
            ),
            (
                EventKind::QrPayout,
                &["QR-Payout", "qr_payout", "qrpayout", "QR-Payout.success"],
            ),
        ];
        for (kind, spellings) in cases {
            for s in spellings {
                assert_eq!(EventKind::parse(s), kind, "{s:?}");
                assert_eq!(s.parse::<EventKind>().unwrap(), kind);
                assert_eq!(EventKind::from(*s), kind);
            }
        }
    }

    #[test]
    fn others_are_kept_verbatim() {
        for s in [
            "Refund",
            "",
            "payments",
            "pay-ment-x",
            "success.payment",
            "Payment2",
        ] {
            assert_eq!(EventKind::parse(s), EventKind::Other(s.to_owned()), "{s:?}");
            assert_eq!(EventKind::parse(s).as_str(), s);
        }
    }

    #[test]
    fn display_is_the_contract_spelling() {
        let all = [
            EventKind::Payment,
            EventKind::Payout,
            EventKind::QrPayment,
            EventKind::QrPayout,
        ];
        let names: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["Payment", "Payout", "QR-Payment", "QR-Payout"]);
        for k in all {
            assert_eq!(EventKind::parse(k.as_str()), k);
        }
    }
}
