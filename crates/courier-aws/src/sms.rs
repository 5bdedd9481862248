//! SMS through SNS `Publish` to a phone number.

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use courier_core::PhoneNumber;
use courier_core::error::PortError;
use courier_core::ports::SmsSender;

/// Sends transactional SMS with an optional sender id.
#[derive(Clone)]
pub struct SnsSms {
    client: aws_sdk_sns::Client,
    sender_id: Option<String>,
}

impl SnsSms {
    /// `sender_id` is shown as the sender where carriers allow it.
    pub fn new(client: aws_sdk_sns::Client, sender_id: Option<String>) -> Self {
        Self {
            client,
            sender_id: sender_id.filter(|s| !s.is_empty()),
        }
    }
}

fn attr(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data type is set")
}

#[async_trait]
impl SmsSender for SnsSms {
    async fn send_sms(&self, to: &PhoneNumber, text: &str) -> Result<(), PortError> {
        let mut req = self
            .client
            .publish()
            .phone_number(to.as_str())
            .message(text)
            .message_attributes("AWS.SNS.SMS.SMSType", attr("Transactional"));
        if let Some(id) = &self.sender_id {
            req = req.message_attributes("AWS.SNS.SMS.SenderID", attr(id));
        }
        let res = req.send().await;
        crate::capacity::record_sns_publish();
        res.map_err(|e| PortError::backend(aws_sdk_sns::Error::from(e)))?;
        Ok(())
    }
}
