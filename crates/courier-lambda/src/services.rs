//! One entry point per function binary. Each picks the handler named by `COURIER_OPERATION` and
//! serves invocations until the sandbox is recycled. The handler, with its SDK clients and
//! stores, is built by the first invocation, once per process ([`lazily`]), so that init does
//! only what cannot wait. State is leaked to `'static` on purpose: it lives exactly as long as
//! the process.

use crate::runtime::Lazy;
use crate::telemetry::{metered, operation};
use crate::{authorizer, http, routes};
use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest,
};
use courier_aws::config::{self, required};
use courier_aws::dynamo::DynamoConnectTickets;
use courier_aws::dynamo::DynamoMedia;
use courier_aws::dynamo::DynamoRateLimiter;
use courier_aws::dynamo::{
    DynamoAccounts, DynamoConnections, DynamoDeviceQueues, DynamoKeys, DynamoMessages,
    DynamoRegistrations, DynamoSessions, DynamoSettings, DynamoStatuses,
};
use courier_aws::gateway::ManagementApi;
use courier_aws::push::SnsPush;
use courier_aws::s3::S3Objects;
use courier_aws::sms::SnsSms;
use courier_core::ApiError;
use courier_core::clock::SystemClock;
use courier_core::protocol::{
    CheckRegistrationPinParams, GetSettingsParams, LookupUserParams, RemoveRegistrationPinParams,
    SetRegistrationPinParams,
};
use courier_core::rate_limit::{Limits, Quota, QuotaThrottle, Rule, Throttle};
use courier_core::usecases::deliver::Deliverer;
use courier_core::usecases::media;
use courier_core::usecases::registration_pin;
use courier_core::usecases::{connect_ticket, delete_account, register_account, validate_account};
use courier_core::usecases::{device_messages, keys, remove_device};
use courier_core::usecases::{
    direct_chat, groups, link_device, lookup_user, profile, push_token, read_messages, receipts,
    send_message,
};
use lambda_runtime::{Error, LambdaEvent, Runtime, Service, service_fn};
use std::rc::Rc;

fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

fn unknown(binary: &str, op: &str) -> Error {
    format!("the {binary} binary has no operation named {op:?}").into()
}

/// What every handler is built from: the SDK configuration and a DynamoDB client.
struct Aws {
    sdk: aws_config::SdkConfig,
    dynamo: aws_sdk_dynamodb::Client,
}

/// The handler `build` makes from the process's [`Aws`]; both are made by the first invocation
/// ([`Lazy`]). Loading the SDK configuration and constructing each client take about 0.1 ms
/// apiece, which init would otherwise add to every cold start (docs/benchmarks.md, cold starts).
fn lazily<S>(build: impl Fn(&Aws) -> Result<S, Error> + 'static) -> Lazy<S> {
    let build = Rc::new(build);
    Lazy::new(move || {
        let build = build.clone();
        async move {
            let sdk = config::sdk_config().await;
            let dynamo = config::dynamodb(&sdk);
            build(&Aws { sdk, dynamo })
        }
    })
}

/// Serves the handler built by `lazily($build)`.
macro_rules! serve_lazily {
    ($build:expr) => {
        crate::runtime::serve(Runtime::new(lazily($build))).await
    };
}

/// Serves the WebSocket action `$name` as `$f(deps, caller, params)`, `deps` being what
/// `$deps(&Aws, $name)` builds.
macro_rules! serve_action {
    ($deps:ident, $name:literal, $f:path) => {
        serve_lazily!(|aws| {
            let deps = $deps(aws, $name)?;
            Ok(ws(move |event| async move {
                routes::action(
                    $name,
                    &event,
                    |who, p| async move { $f(deps, &who, p).await },
                )
                .await
            }))
        })
    };
}

/// Serves the WebSocket action `$name` as [`serve_action`] does, after taking one request from
/// the calling device's bucket for `$name` under the configured rule `$pick` (`LIMIT_EXCEEDED`
/// with `retryAfter` past it; nothing is done then).
macro_rules! serve_limited_action {
    ($deps:ident, $name:literal, $f:path, $pick:expr) => {
        serve_lazily!(|aws| {
            let deps = $deps(aws, $name)?;
            let limit = per_device(&aws.dynamo, $pick)?;
            Ok(ws(move |event| async move {
                routes::action($name, &event, |who, p| async move {
                    limit.take(&who).await?;
                    $f(deps, &who, p).await
                })
                .await
            }))
        })
    };
}

/// One operation's limit per calling device.
#[derive(Clone, Copy)]
struct PerDevice {
    throttle: &'static Throttle<'static>,
    operation: &'static str,
}

impl PerDevice {
    async fn take(
        &self,
        who: &courier_core::ports::DeviceCredential,
    ) -> Result<(), courier_core::ApiError> {
        use courier_core::clock::Clock;
        courier_core::rate_limit::take_per_device(
            Some(self.throttle),
            self.operation,
            who,
            SystemClock.now(),
        )
        .await
    }
}

/// The limit per device of the running operation (`COURIER_OPERATION`), under the rule `pick`s.
fn per_device(
    dynamo: &aws_sdk_dynamodb::Client,
    pick: fn(&Limits) -> Rule,
) -> Result<&'static PerDevice, Error> {
    Ok(leak(PerDevice {
        throttle: leak(throttle(dynamo, pick)?),
        operation: leak(required("COURIER_OPERATION")?).as_str(),
    }))
}

/// The running operation's limits on directory reads (`lookupUser`, `getProfile`): per device
/// and per account.
#[derive(Clone, Copy)]
struct Lookups {
    device: &'static Throttle<'static>,
    account: &'static Throttle<'static>,
    operation: &'static str,
}

impl Lookups {
    async fn take(
        &self,
        who: &courier_core::ports::DeviceCredential,
    ) -> Result<(), courier_core::ApiError> {
        use courier_core::clock::Clock;
        courier_core::rate_limit::take_per_device_and_account(
            Some(self.device),
            Some(self.account),
            self.operation,
            who,
            SystemClock.now(),
        )
        .await
    }
}

fn lookups(dynamo: &aws_sdk_dynamodb::Client) -> Result<&'static Lookups, Error> {
    Ok(leak(Lookups {
        device: leak(throttle(dynamo, |l| l.lookups)?),
        account: leak(throttle(dynamo, |l| l.lookups_per_account)?),
        operation: leak(required("COURIER_OPERATION")?).as_str(),
    }))
}

/// A cap per target on what strangers do to it (`key` names its counters).
fn stranger_cap(
    dynamo: &aws_sdk_dynamodb::Client,
    pick: fn(&Limits) -> Rule,
    key: &'static str,
) -> Result<courier_core::rate_limit::StrangerCap<'static>, Error> {
    Ok(courier_core::rate_limit::StrangerCap {
        settings: leak(settings_store(dynamo)?),
        throttle: throttle(dynamo, pick)?,
        key,
    })
}

/// The shared rate-limit store (`RATE_LIMIT_TABLE`) and the configured rule `pick`s.
fn throttle(
    dynamo: &aws_sdk_dynamodb::Client,
    pick: fn(&Limits) -> Rule,
) -> Result<Throttle<'static>, Error> {
    let limits = config::limits()?;
    let limiter: &'static DynamoRateLimiter = leak(DynamoRateLimiter::new(
        dynamo.clone(),
        required("RATE_LIMIT_TABLE")?,
    ));
    Ok(Throttle {
        limiter,
        rule: pick(&limits),
    })
}

/// The shared rate-limit store (`RATE_LIMIT_TABLE`) and the configured quota `pick`s.
fn quota(
    dynamo: &aws_sdk_dynamodb::Client,
    pick: fn(&Limits) -> Quota,
) -> Result<QuotaThrottle<'static>, Error> {
    let limits = config::limits()?;
    Ok(QuotaThrottle {
        limiter: leak(DynamoRateLimiter::new(
            dynamo.clone(),
            required("RATE_LIMIT_TABLE")?,
        )),
        quota: pick(&limits),
    })
}

/// The country allow-list and the hourly SMS budgets of `registerAccount`.
fn sms_guard(
    dynamo: &aws_sdk_dynamodb::Client,
) -> Result<register_account::SmsGuard<'static>, Error> {
    let (allowed_calling_codes, per_country, global) = config::sms_guard()?;
    let limiter: &'static DynamoRateLimiter = leak(DynamoRateLimiter::new(
        dynamo.clone(),
        required("RATE_LIMIT_TABLE")?,
    ));
    Ok(register_account::SmsGuard {
        allowed_calling_codes,
        per_country: Throttle {
            limiter,
            rule: per_country,
        },
        global: Throttle {
            limiter,
            rule: global,
        },
    })
}

fn accounts(dynamo: &aws_sdk_dynamodb::Client) -> Result<DynamoAccounts, Error> {
    Ok(DynamoAccounts::new(
        dynamo.clone(),
        required("USERS_TABLE")?,
        required("API_KEYS_TABLE")?,
    ))
}

fn connection_store(dynamo: &aws_sdk_dynamodb::Client) -> Result<DynamoConnections, Error> {
    Ok(DynamoConnections::new(
        dynamo.clone(),
        required("CONNECTIONS_TABLE")?,
    ))
}

/// The `registration` binary: `registerAccount`, `validateAccount` (HTTP API).
pub async fn registration() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    let registrations = |dynamo: &aws_sdk_dynamodb::Client| -> Result<_, Error> {
        Ok(leak(DynamoRegistrations::new(
            dynamo.clone(),
            required("REGISTRATIONS_TABLE")?,
        )))
    };
    match op.as_str() {
        "registerAccount" => serve_lazily!(move |Aws { sdk, dynamo }| {
            let sms = leak(SnsSms::new(
                config::sns(sdk),
                std::env::var("SMS_SENDER_ID").ok(),
            ));
            let code_lifetime_secs = match std::env::var("CODE_TTL_SECS") {
                Ok(v) if !v.is_empty() => v
                    .parse()
                    .map_err(|_| format!("CODE_TTL_SECS must be a number of seconds, got {v:?}"))?,
                _ => register_account::CODE_LIFETIME_SECS,
            };
            let test_numbers = register_account::TestNumbers::from_config(
                &std::env::var("TEST_PHONE_PREFIX").unwrap_or_default(),
                &std::env::var("TEST_PHONE_CODE").unwrap_or_default(),
            )?;
            let deps = leak(register_account::Deps {
                registrations: registrations(dynamo)?,
                sms,
                clock: &SystemClock,
                code_lifetime_secs,
                test_numbers,
                limits: Some(register_account::CodeLimits {
                    per_phone: throttle(dynamo, |l| l.codes_per_phone)?,
                    per_ip: throttle(dynamo, |l| l.codes_per_ip)?,
                }),
                sms_guard: Some(sms_guard(dynamo)?),
            });
            Ok(lambda_http::Adapter::from(lambda_http::service_fn(
                move |req| async move {
                    Ok::<_, Error>(
                        metered("registerAccount", http::register_account(deps, req)).await,
                    )
                },
            )))
        }),
        "validateAccount" => serve_lazily!(move |Aws { sdk, dynamo }| {
            let connections = leak(connection_store(dynamo)?);
            let deps = leak(validate_account::Deps {
                registrations: registrations(dynamo)?,
                accounts: leak(accounts(dynamo)?),
                connections,
                gateway: leak(ManagementApi::new(config::management(sdk)?)),
                keys: leak(keys_store(dynamo)?),
                queues: leak(queue_store(dynamo)?),
                clock: &SystemClock,
                // A registration PIN reset deletes the old account's data.
                data: account_data(sdk, dynamo, connections)?,
            });
            Ok(lambda_http::Adapter::from(lambda_http::service_fn(
                move |req| async move {
                    Ok::<_, Error>(
                        metered("validateAccount", http::validate_account(deps, req)).await,
                    )
                },
            )))
        }),
        "createConnectTicket" => serve_lazily!(|Aws { dynamo, .. }| {
            let keys_table = required("API_KEYS_TABLE")?;
            let deps = leak(connect_ticket::Deps {
                credentials: leak(DynamoAccounts::new(dynamo.clone(), "", keys_table.clone())),
                tickets: leak(DynamoConnectTickets::new(dynamo.clone(), keys_table)),
                clock: &SystemClock,
                failures: Some(throttle(dynamo, |l| l.failed_connects)?),
                lifetime_secs: config::connect_ticket_lifetime_secs()?,
            });
            Ok(lambda_http::Adapter::from(lambda_http::service_fn(
                move |req| async move {
                    Ok::<_, Error>(
                        metered(
                            "createConnectTicket",
                            http::create_connect_ticket(deps, req),
                        )
                        .await,
                    )
                },
            )))
        }),
        other => Err(unknown("registration", other)),
    }
}

/// The `authorizer` binary: the `$connect` REQUEST authorizer.
pub async fn authorizer() -> Result<(), Error> {
    crate::telemetry::init();
    serve_lazily!(|Aws { dynamo, .. }| {
        let credentials = leak(DynamoAccounts::new(
            dynamo.clone(),
            "",
            required("API_KEYS_TABLE")?,
        ));
        let failures = leak(throttle(dynamo, |l| l.failed_connects)?);
        let tickets: &'static DynamoConnectTickets = leak(DynamoConnectTickets::new(
            dynamo.clone(),
            required("API_KEYS_TABLE")?,
        ));
        Ok(service_fn(
            move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
                metered(
                    "authorize",
                    authorizer::handle_limited(
                        credentials,
                        Some(tickets),
                        Some(failures),
                        &SystemClock,
                        &event.payload,
                    ),
                )
                .await
            },
        ))
    })
}

/// The `connections` binary: `$connect`, `$disconnect`, `$default`.
pub async fn connections() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    match op.as_str() {
        // Builds nothing: it answers from the request alone.
        "default" => {
            crate::runtime::serve(Runtime::new(service_fn(
                |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                    Ok::<_, Error>(
                        metered("default", async { routes::default_route(&event.payload) }).await,
                    )
                },
            )))
            .await
        }
        "connect" => serve_lazily!(|Aws { dynamo, .. }| {
            // Records a connection only while its device exists (docs/security.md, revocation).
            let store =
                leak(connection_store(dynamo)?.checking_devices_in(required("USERS_TABLE")?));
            Ok(service_fn(
                move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                    Ok::<_, Error>(
                        metered(
                            "connect",
                            routes::connect(store, store, &SystemClock, &event.payload),
                        )
                        .await,
                    )
                },
            ))
        }),
        "disconnect" => serve_lazily!(|Aws { dynamo, .. }| {
            let store = leak(connection_store(dynamo)?);
            Ok(service_fn(
                move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                    Ok::<_, Error>(
                        metered(
                            "disconnect",
                            routes::disconnect(store, store, &SystemClock, &event.payload),
                        )
                        .await,
                    )
                },
            ))
        }),
        other => Err(unknown("connections", other)),
    }
}

/// The stores of an account's data beyond its devices (`deleteAccount`, and a registration PIN
/// reset in `validateAccount`).
fn account_data(
    sdk: &aws_config::SdkConfig,
    dynamo: &aws_sdk_dynamodb::Client,
    connections: &'static DynamoConnections,
) -> Result<delete_account::AccountData<'static>, Error> {
    let sessions = leak(sessions_store(dynamo)?);
    Ok(delete_account::AccountData {
        sessions,
        groups: sessions,
        messages: leak(messages_store(dynamo)?),
        presence: connections,
        settings: leak(settings_store(dynamo)?),
        statuses: leak(DynamoStatuses::new(
            dynamo.clone(),
            required("STATUS_TABLE")?,
        )),
        backups: leak(backup_store(dynamo)?),
        objects: leak(media_objects(sdk)?),
    })
}

/// The `accounts` binary: `deleteAccount`, `lookupUser`, `discoverContacts`, `getSettings`,
/// `updateSettings`, `updateContacts`, `getProfile`, `setRegistrationPin`,
/// `removeRegistrationPin`, `checkRegistrationPin`.
pub async fn accounts_service() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    match op.as_str() {
        "deleteAccount" => serve_lazily!(|Aws { sdk, dynamo }| {
            let connections = leak(connection_store(dynamo)?);
            let deps = leak(delete_account::Deps {
                accounts: leak(accounts(dynamo)?),
                connections,
                gateway: leak(ManagementApi::new(config::management(sdk)?)),
                keys: leak(keys_store(dynamo)?),
                queues: leak(queue_store(dynamo)?),
                clock: &SystemClock,
                data: account_data(sdk, dynamo, connections)?,
            });
            Ok(service_fn(
                move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                    Ok::<_, Error>(
                        metered(
                            "deleteAccount",
                            routes::delete_account(deps, &event.payload),
                        )
                        .await,
                    )
                },
            ))
        }),
        "lookupUser" => serve_lazily!(|Aws { dynamo, .. }| {
            let accounts = leak(DynamoAccounts::new(
                dynamo.clone(),
                required("USERS_TABLE")?,
                "",
            ));
            let limit = lookups(dynamo)?;
            Ok(ws(move |event| async move {
                routes::action(
                    "lookupUser",
                    &event,
                    |who, p: LookupUserParams| async move {
                        limit.take(&who).await?;
                        lookup_user::lookup_user(accounts, &p.phone).await
                    },
                )
                .await
            }))
        }),
        "discoverContacts" => serve_lazily!(|Aws { dynamo, .. }| {
            let deps = leak(courier_core::usecases::discover_contacts::Deps {
                accounts: leak(DynamoAccounts::new(
                    dynamo.clone(),
                    required("USERS_TABLE")?,
                    "",
                )),
                budget: Some(throttle(dynamo, |l| l.discoveries)?),
                clock: &SystemClock,
            });
            Ok(ws(move |event| async move {
                routes::action("discoverContacts", &event, |who, p| async move {
                    courier_core::usecases::discover_contacts::discover_contacts(deps, &who, p)
                        .await
                })
                .await
            }))
        }),
        "getSettings" | "updateSettings" | "updateContacts" | "getProfile" => {
            let profile_deps = move |dynamo: &aws_sdk_dynamodb::Client, op: &str| {
                // Settings and contacts live in the users table; only getProfile reads last
                // seen (the others get no connections table, and never call it).
                let last_seen = leak(if op == "getProfile" {
                    connection_store(dynamo)?
                } else {
                    DynamoConnections::new(dynamo.clone(), "")
                });
                Ok::<_, Error>(leak(profile::Deps {
                    settings: leak(settings_store(dynamo)?),
                    accounts: leak(DynamoAccounts::new(
                        dynamo.clone(),
                        required("USERS_TABLE")?,
                        "",
                    )),
                    last_seen,
                    clock: &SystemClock,
                }))
            };
            macro_rules! serve {
                ($deps:ident, $name:literal, $body:expr) => {
                    serve_lazily!(move |Aws { dynamo, .. }| {
                        let $deps = profile_deps(dynamo, $name)?;
                        Ok(ws(move |event| async move {
                            routes::action($name, &event, $body).await
                        }))
                    })
                };
                // Limited per device by the rule `$pick`, `$limit` in `$body`.
                ($deps:ident, $limit:ident = $pick:expr, $name:literal, $body:expr) => {
                    serve_lazily!(move |Aws { dynamo, .. }| {
                        let $deps = profile_deps(dynamo, $name)?;
                        let $limit = per_device(dynamo, $pick)?;
                        Ok(ws(move |event| async move {
                            routes::action($name, &event, $body).await
                        }))
                    })
                };
            }
            match op.as_str() {
                "getSettings" => serve!(deps, "getSettings", |who, _: GetSettingsParams| {
                    async move { profile::get_settings(deps, &who).await }
                }),
                "updateSettings" => serve!(
                    deps,
                    limit = |l| l.actions,
                    "updateSettings",
                    |who, p| async move {
                        limit.take(&who).await?;
                        profile::update_settings(deps, &who, p).await
                    }
                ),
                "updateContacts" => serve!(
                    deps,
                    limit = |l| l.actions,
                    "updateContacts",
                    |who, p| async move {
                        limit.take(&who).await?;
                        profile::update_contacts(deps, &who, p).await
                    }
                ),
                _ => serve_lazily!(move |Aws { dynamo, .. }| {
                    let deps = profile_deps(dynamo, "getProfile")?;
                    let limit = lookups(dynamo)?;
                    Ok(ws(move |event| async move {
                        routes::action("getProfile", &event, |who, p| async move {
                            limit.take(&who).await?;
                            profile::get_profile(deps, &who, p).await
                        })
                        .await
                    }))
                }),
            }
        }
        "setRegistrationPin" | "removeRegistrationPin" | "checkRegistrationPin" => {
            serve_lazily!(|Aws { dynamo, .. }| {
                // Two-step verification: per-device action limit, and the account's budget of
                // wrong PINs (companions' currentPin, checkRegistrationPin); the use case checks
                // who may do what and never logs or returns the PIN.
                let deps = leak(registration_pin::Deps {
                    accounts: leak(DynamoAccounts::new(
                        dynamo.clone(),
                        required("USERS_TABLE")?,
                        "",
                    )),
                    limit: Some(throttle(dynamo, |l| l.actions)?),
                    checks: Some(throttle(dynamo, |l| l.pin_checks)?),
                    clock: &SystemClock,
                });
                let op = operation();
                Ok(ws(move |event| async move {
                    match op {
                        "setRegistrationPin" => {
                            routes::action(
                                "setRegistrationPin",
                                &event,
                                |who, p: SetRegistrationPinParams| async move {
                                    let r = registration_pin::set_registration_pin(deps, &who, p)
                                        .await?;
                                    serde_json::to_value(r).map_err(ApiError::internal)
                                },
                            )
                            .await
                        }
                        "removeRegistrationPin" => {
                            routes::action(
                                "removeRegistrationPin",
                                &event,
                                |who, p: RemoveRegistrationPinParams| async move {
                                    let r =
                                        registration_pin::remove_registration_pin(deps, &who, p)
                                            .await?;
                                    serde_json::to_value(r).map_err(ApiError::internal)
                                },
                            )
                            .await
                        }
                        _ => {
                            routes::action(
                                "checkRegistrationPin",
                                &event,
                                |who, p: CheckRegistrationPinParams| async move {
                                    let r = registration_pin::check_registration_pin(deps, &who, p)
                                        .await?;
                                    serde_json::to_value(r).map_err(ApiError::internal)
                                },
                            )
                            .await
                        }
                    }
                }))
            })
        }
        other => Err(unknown("accounts", other)),
    }
}

fn settings_store(dynamo: &aws_sdk_dynamodb::Client) -> Result<DynamoSettings, Error> {
    Ok(DynamoSettings::new(
        dynamo.clone(),
        required("USERS_TABLE")?,
    ))
}

/// A WebSocket route's handler, for every invocation.
fn ws<F, Fut>(
    handler: F,
) -> impl Service<
    LambdaEvent<ApiGatewayWebsocketProxyRequest>,
    Response = ApiGatewayProxyResponse,
    Error = Error,
    Future: 'static,
> + 'static
where
    F: Fn(ApiGatewayWebsocketProxyRequest) -> Fut + 'static,
    Fut: std::future::Future<Output = ApiGatewayProxyResponse> + 'static,
{
    service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let fut = handler(event.payload);
        async move { Ok::<_, Error>(metered(operation(), fut).await) }
    })
}

fn sessions_store(dynamo: &aws_sdk_dynamodb::Client) -> Result<DynamoSessions, Error> {
    Ok(DynamoSessions::new(
        dynamo.clone(),
        required("SESSIONS_TABLE")?,
    ))
}

fn messages_store(dynamo: &aws_sdk_dynamodb::Client) -> Result<DynamoMessages, Error> {
    Ok(DynamoMessages::new(
        dynamo.clone(),
        required("MESSAGES_TABLE")?,
        required("SESSIONS_TABLE")?,
    ))
}

/// The `groups` binary: `initiateGroupChatSession`, `getGroup`, `addUserToGroup`,
/// `removeUserFromGroup`, `promoteUserToAdmin`, `deleteGroup`, and the scheduled `groupCensus`.
pub async fn groups_service() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    if op == "groupCensus" {
        // Scheduled (EventBridge): the size of every group, for the median group size.
        return serve_lazily!(|Aws { dynamo, .. }| {
            let sessions = leak(sessions_store(dynamo)?);
            Ok(service_fn(
                move |_: LambdaEvent<serde_json::Value>| async move {
                    metered("groupCensus", async {
                        let sizes =
                            courier_core::usecases::analytics::group_census(sessions).await?;
                        crate::telemetry::count("GroupsCounted", sizes.len() as u64);
                        for size in &sizes {
                            crate::telemetry::observe(
                                "GroupSize",
                                crate::telemetry::Unit::None,
                                f64::from(*size),
                            );
                        }
                        tracing::info!(groups = sizes.len(), "group census");
                        Ok::<_, Error>(serde_json::json!({ "groups": sizes.len() }))
                    })
                    .await
                },
            ))
        });
    }
    /// Every group operation gets the same stores.
    fn group_deps(
        Aws { sdk, dynamo }: &Aws,
        op: &str,
    ) -> Result<&'static groups::Deps<'static>, Error> {
        let sessions = leak(sessions_store(dynamo)?);
        // Only the users table is read (does a member exist?).
        let accounts = leak(DynamoAccounts::new(
            dynamo.clone(),
            required("USERS_TABLE")?,
            "",
        ));
        let messages = leak(messages_store(dynamo)?);
        Ok(leak(groups::Deps {
            groups: sessions,
            sessions,
            messages,
            accounts,
            settings: leak(settings_store(dynamo)?),
            // Each change is delivered by the operation that makes it, pushes included (the
            // notices sent directly are never pushed: they carry no push note).
            deliver: deliverer(sdk, dynamo, true)?,
            log: Some(messages),
            clock: &SystemClock,
            // Only these two put someone in a group.
            adds_per_target: match op {
                "initiateGroupChatSession" | "addUserToGroup" => Some(stranger_cap(
                    dynamo,
                    |l| l.group_adds_per_target,
                    "group-adds",
                )?),
                _ => None,
            },
        }))
    }
    match op.as_str() {
        "initiateGroupChatSession" => serve_limited_action!(
            group_deps,
            "initiateGroupChatSession",
            groups::initiate,
            |l| l.actions
        ),
        "getGroup" => serve_action!(group_deps, "getGroup", groups::get),
        "addUserToGroup" => {
            serve_limited_action!(group_deps, "addUserToGroup", groups::add, |l| l.actions)
        }
        "removeUserFromGroup" => {
            serve_limited_action!(group_deps, "removeUserFromGroup", groups::remove, |l| l
                .actions)
        }
        "promoteUserToAdmin" => {
            serve_limited_action!(group_deps, "promoteUserToAdmin", groups::promote, |l| l
                .actions)
        }
        "deleteGroup" => {
            serve_limited_action!(group_deps, "deleteGroup", groups::delete, |l| l.actions)
        }
        other => Err(unknown("groups", other)),
    }
}

/// The chats and their messages, which every operation of `sessions` and `messages` reads.
fn chat_stores(
    dynamo: &aws_sdk_dynamodb::Client,
) -> Result<(&'static DynamoSessions, &'static DynamoMessages), Error> {
    Ok((leak(sessions_store(dynamo)?), leak(messages_store(dynamo)?)))
}

/// The `sessions` binary: `initiateDirectChatSession`, `listSessions`.
pub async fn sessions() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    match op.as_str() {
        "initiateDirectChatSession" => serve_lazily!(|Aws { sdk, dynamo }| {
            let (sessions, messages) = chat_stores(dynamo)?;
            // The handshake is delivered as `sendMessage` delivers a message (crate::inline).
            let deliverer = leak(deliverer(sdk, dynamo, true)?);
            // It only reads profiles (does the peer exist?), so it gets no API-keys table.
            let deps = leak(direct_chat::Deps {
                accounts: leak(DynamoAccounts::new(
                    dynamo.clone(),
                    required("USERS_TABLE")?,
                    "",
                )),
                sessions,
                messages,
                clock: &SystemClock,
                handshakes_per_target: Some(stranger_cap(
                    dynamo,
                    |l| l.handshakes_per_target,
                    "chats",
                )?),
            });
            let limit = per_device(dynamo, |l| l.actions)?;
            Ok(ws(move |event| async move {
                routes::action("initiateDirectChatSession", &event, |who, p| async move {
                    limit.take(&who).await?;
                    let started = direct_chat::initiate(deps, &who, p).await?;
                    // Before the reply: a direct chat's handshake goes to the peer's few devices.
                    if let Some(out) = &started.outbound {
                        crate::inline::deliver(sessions, deliverer, messages, out).await;
                    }
                    Ok(started.reply)
                })
                .await
            }))
        }),
        "listSessions" => serve_lazily!(|Aws { dynamo, .. }| {
            let (sessions, messages) = chat_stores(dynamo)?;
            Ok(ws(move |event| async move {
                routes::action("listSessions", &event, |who, p| async move {
                    direct_chat::list_sessions(sessions, messages, &who, p).await
                })
                .await
            }))
        }),
        other => Err(unknown("sessions", other)),
    }
}

/// The `messages` binary: `sendMessage`, `readNewMessages`, `ackMessages`, `getMessageStatus`.
pub async fn messages() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    match op.as_str() {
        "sendMessage" => serve_lazily!(|Aws { sdk, dynamo }| {
            let (sessions, messages) = chat_stores(dynamo)?;
            let send = leak(send_message::Deps {
                sessions,
                messages,
                clock: &SystemClock,
                media: Some(attach_deps(sdk, dynamo)?),
                throttle: Some(throttle(dynamo, |l| l.sends)?),
            });
            // Inline delivery: live devices by post, offline ones by push, as the fan-out does.
            let handler = leak(crate::inline::SendMessage {
                send,
                sessions,
                deliver: leak(deliverer(sdk, dynamo, true)?),
                log: messages,
            });
            Ok(ws(move |event| async move {
                crate::inline::handle(handler, &event).await
            }))
        }),
        "readNewMessages" => serve_lazily!(|Aws { dynamo, .. }| {
            let (sessions, messages) = chat_stores(dynamo)?;
            Ok(ws(move |event| async move {
                routes::action("readNewMessages", &event, |who, p| async move {
                    read_messages::read_new_messages(sessions, messages, &who, p).await
                })
                .await
            }))
        }),
        "getMessageStatus" => serve_lazily!(|Aws { dynamo, .. }| {
            let (sessions, messages) = chat_stores(dynamo)?;
            let settings = leak(settings_store(dynamo)?);
            Ok(ws(move |event| async move {
                routes::action("getMessageStatus", &event, |who, p| async move {
                    receipts::get_message_status(sessions, messages, settings, &who, p).await
                })
                .await
            }))
        }),
        "ackMessages" => serve_lazily!(|Aws { sdk, dynamo }| {
            let (sessions, messages) = chat_stores(dynamo)?;
            let deps = leak(receipts::AckDeps {
                sessions,
                messages,
                deliver: deliverer(sdk, dynamo, false)?,
                settings: leak(settings_store(dynamo)?),
                clock: &SystemClock,
            });
            // Acks move watermarks and post status events to others, at the pace messages
            // arrive: they share the send rule (a bucket of their own).
            let limit = per_device(dynamo, |l| l.sends)?;
            Ok(ws(move |event| async move {
                routes::action(
                    "ackMessages",
                    &event,
                    |who, p: courier_core::protocol::AckMessagesParams| async move {
                        limit.take(&who).await?;
                        let metric = match p.status {
                            courier_core::chat::Receipt::Read => "MessagesRead",
                            _ => "MessagesDelivered",
                        };
                        let acked = receipts::ack_messages_measured(deps, &who, p).await?;
                        crate::telemetry::count(metric, 1);
                        if let Some(latency) = acked.delivery_latency {
                            crate::telemetry::observe(
                                "DeliveryLatencyMs",
                                crate::telemetry::Unit::Milliseconds,
                                latency.as_secs_f64() * 1000.0,
                            );
                        }
                        Ok(acked.reply)
                    },
                )
                .await
            }))
        }),
        other => Err(unknown("messages", other)),
    }
}

fn sns_push(sdk: &aws_config::SdkConfig) -> SnsPush {
    SnsPush::new(
        config::sns(sdk),
        std::env::var("APNS_PLATFORM_APP_ARN").ok(),
        std::env::var("FCM_PLATFORM_APP_ARN").ok(),
    )
}

/// Delivery to live connections (`CONNECTIONS_TABLE`, the management API) and, with
/// `push_offline`, to offline devices through SNS.
fn deliverer(
    sdk: &aws_config::SdkConfig,
    dynamo: &aws_sdk_dynamodb::Client,
    push_offline: bool,
) -> Result<Deliverer<'static>, Error> {
    let connections = leak(connection_store(dynamo)?);
    Ok(Deliverer {
        presence: connections,
        connections,
        gateway: leak(ManagementApi::new(config::management(sdk)?)),
        push: if push_offline {
            Some(leak(sns_push(sdk)))
        } else {
            None
        },
    })
}

/// The `push` binary: `registerPushToken`.
pub async fn push() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    match op.as_str() {
        "registerPushToken" => serve_lazily!(|Aws { sdk, dynamo }| {
            let push = leak(sns_push(sdk));
            let presence = leak(connection_store(dynamo)?);
            let limit = per_device(dynamo, |l| l.actions)?;
            Ok(ws(move |event| async move {
                routes::action("registerPushToken", &event, |who, p| async move {
                    limit.take(&who).await?;
                    push_token::register_push_token(push, presence, &who, p).await
                })
                .await
            }))
        }),
        other => Err(unknown("push", other)),
    }
}

/// The `fanout` binary: the messages table's stream -> every member device, for what
/// `sendMessage` did not deliver itself.
pub async fn fanout() -> Result<(), Error> {
    crate::telemetry::init();
    serve_lazily!(|Aws { sdk, dynamo }| {
        let (sessions, messages) = chat_stores(dynamo)?;
        let deliver = leak(deliverer(sdk, dynamo, true)?);
        let grace = crate::stream::grace();
        Ok(service_fn(
            move |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| async move {
                Ok::<_, Error>(
                    metered(
                        "fanOut",
                        crate::stream::handle(sessions, deliver, messages, grace, event.payload),
                    )
                    .await,
                )
            },
        ))
    })
}

fn keys_store(dynamo: &aws_sdk_dynamodb::Client) -> Result<DynamoKeys, Error> {
    Ok(DynamoKeys::new(dynamo.clone(), required("KEYS_TABLE")?))
}

fn queue_store(dynamo: &aws_sdk_dynamodb::Client) -> Result<DynamoDeviceQueues, Error> {
    Ok(DynamoDeviceQueues::new(
        dynamo.clone(),
        required("DEVICE_QUEUE_TABLE")?,
    ))
}

/// The `devices` binary: `createLinkRequest`, `getLinkRequest` (HTTP API), `approveDeviceLink`,
/// `removeDevice`, the key directory (`uploadKeys`, `claimKeys`, `listDevices`) and the device
/// queues (`sendToDevice`, `readDeviceMessages`, `ackDeviceMessages`) (WebSocket).
pub async fn devices() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    match op.as_str() {
        "createLinkRequest" | "getLinkRequest" | "approveDeviceLink" => link_operations(&op).await,
        "uploadKeys" => {
            serve_limited_action!(key_deps, "uploadKeys", keys::upload_keys, |l| l.actions)
        }
        "claimKeys" => {
            serve_limited_action!(key_deps, "claimKeys", keys::claim_keys, |l| l.key_claims)
        }
        "listDevices" => serve_action!(key_deps, "listDevices", keys::list_devices),
        "sendToDevice" => serve_action!(
            device_message_deps,
            "sendToDevice",
            device_messages::send_to_device
        ),
        "readDeviceMessages" => serve_action!(
            device_message_deps,
            "readDeviceMessages",
            device_messages::read_device_messages
        ),
        "ackDeviceMessages" => serve_action!(
            device_message_deps,
            "ackDeviceMessages",
            device_messages::ack_device_messages
        ),
        "removeDevice" => serve_lazily!(|Aws { sdk, dynamo }| {
            let connections = leak(connection_store(dynamo)?);
            let deps = leak(remove_device::Deps {
                accounts: leak(accounts(dynamo)?),
                connections,
                presence: connections,
                gateway: leak(ManagementApi::new(config::management(sdk)?)),
                keys: leak(keys_store(dynamo)?),
                queues: leak(queue_store(dynamo)?),
            });
            Ok(service_fn(
                move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                    Ok::<_, Error>(
                        metered("removeDevice", routes::remove_device(deps, &event.payload)).await,
                    )
                },
            ))
        }),
        other => Err(unknown("devices", other)),
    }
}

/// The key directory's stores for `op`: device lists (claimKeys, listDevices) read the users
/// table, not the API keys; uploadKeys reads no account.
fn key_deps(Aws { dynamo, .. }: &Aws, op: &str) -> Result<&'static keys::Deps<'static>, Error> {
    let users_table = match op {
        "uploadKeys" => String::new(),
        _ => required("USERS_TABLE")?,
    };
    Ok(leak(keys::Deps {
        accounts: leak(DynamoAccounts::new(dynamo.clone(), users_table, "")),
        keys: leak(keys_store(dynamo)?),
        one_time_keys_per_target: if op == "claimKeys" {
            Some(throttle(dynamo, |l| l.one_time_keys_per_target)?)
        } else {
            None
        },
        clock: &SystemClock,
    }))
}

/// The device queues' stores for `op`: only sendToDevice delivers, reads the users table and is
/// rate-limited.
fn device_message_deps(
    Aws { sdk, dynamo }: &Aws,
    op: &str,
) -> Result<&'static device_messages::Deps<'static>, Error> {
    let sends = op == "sendToDevice";
    let deliver = if sends {
        Some(deliverer(sdk, dynamo, true)?)
    } else {
        None
    };
    let accounts: &'static DynamoAccounts = if sends {
        leak(DynamoAccounts::new(
            dynamo.clone(),
            required("USERS_TABLE")?,
            "",
        ))
    } else {
        leak(DynamoAccounts::new(dynamo.clone(), "", ""))
    };
    Ok(leak(device_messages::Deps {
        accounts,
        queues: leak(queue_store(dynamo)?),
        deliver,
        clock: &SystemClock,
        throttle: if sends {
            Some(throttle(dynamo, |l| l.sends)?)
        } else {
            None
        },
    }))
}

/// Device linking: `createLinkRequest`, `getLinkRequest` (HTTP API), `approveDeviceLink`.
async fn link_operations(op: &str) -> Result<(), Error> {
    fn link_deps(
        Aws { dynamo, .. }: &Aws,
        op: &str,
    ) -> Result<&'static link_device::Deps<'static>, Error> {
        let accounts = leak(accounts(dynamo)?);
        let links = leak(courier_aws::dynamo::DynamoLinks::new(
            dynamo.clone(),
            required("LINKS_TABLE")?,
            accounts.clone(),
        ));
        // The poll (getLinkRequest) is not limited: the waiting device polls until approved,
        // and its linkId is a 128-bit secret no one can guess.
        let throttle = match op {
            "createLinkRequest" | "approveDeviceLink" => {
                Some(throttle(dynamo, |l| l.link_attempts)?)
            }
            _ => None,
        };
        Ok(leak(link_device::Deps {
            links,
            accounts,
            clock: &SystemClock,
            throttle,
        }))
    }
    match op {
        "createLinkRequest" => serve_lazily!(|aws| {
            let deps = link_deps(aws, "createLinkRequest")?;
            Ok(lambda_http::Adapter::from(lambda_http::service_fn(
                move |req| async move {
                    Ok::<_, Error>(
                        metered("createLinkRequest", http::create_link_request(deps, req)).await,
                    )
                },
            )))
        }),
        "getLinkRequest" => serve_lazily!(|aws| {
            let deps = link_deps(aws, "getLinkRequest")?;
            Ok(lambda_http::Adapter::from(lambda_http::service_fn(
                move |req| async move {
                    Ok::<_, Error>(
                        metered("getLinkRequest", http::get_link_request(deps, req)).await,
                    )
                },
            )))
        }),
        _ => serve_lazily!(|aws| {
            let deps = link_deps(aws, "approveDeviceLink")?;
            Ok(ws(move |event| async move {
                routes::action(
                    "approveDeviceLink",
                    &event,
                    |who, p: courier_core::protocol::ApproveDeviceLinkParams| async move {
                        link_device::approve(deps, &who, &p.code).await
                    },
                )
                .await
            }))
        }),
    }
}

fn backup_store(
    dynamo: &aws_sdk_dynamodb::Client,
) -> Result<courier_aws::dynamo::DynamoBackups, Error> {
    Ok(courier_aws::dynamo::DynamoBackups::new(
        dynamo.clone(),
        required("BACKUP_TABLE")?,
    ))
}

/// The `status` binary: `postStatus`, `removeStatus`, `viewStatus`, `getStatusViewers`,
/// `getStatusAudience`.
pub async fn status() -> Result<(), Error> {
    use courier_core::usecases::status;
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    match op.as_str() {
        "postStatus" => serve_action!(status_deps, "postStatus", post_status_counted),
        "removeStatus" => {
            serve_limited_action!(status_deps, "removeStatus", status::remove_status, |l| l
                .actions)
        }
        "viewStatus" => serve_action!(status_deps, "viewStatus", status::view_status),
        "getStatusViewers" => {
            serve_action!(status_deps, "getStatusViewers", status::get_status_viewers)
        }
        "getStatusAudience" => serve_action!(
            status_deps,
            "getStatusAudience",
            status::get_status_audience
        ),
        other => Err(unknown("status", other)),
    }
}

/// The stores of the status operation `op`: each gets only the tables its policy names (an
/// empty name is never called).
fn status_deps(
    Aws { sdk, dynamo }: &Aws,
    op: &str,
) -> Result<&'static courier_core::usecases::status::Deps<'static>, Error> {
    use courier_core::usecases::status;
    let table = |var: &'static str, used: &[&str]| -> Result<String, Error> {
        if used.contains(&op) {
            Ok(required(var)?)
        } else {
            Ok(String::new())
        }
    };
    let statuses = leak(DynamoStatuses::new(
        dynamo.clone(),
        table(
            "STATUS_TABLE",
            &[
                "postStatus",
                "removeStatus",
                "viewStatus",
                "getStatusViewers",
            ],
        )?,
    ));
    let settings = leak(DynamoSettings::new(
        dynamo.clone(),
        table(
            "USERS_TABLE",
            &["postStatus", "viewStatus", "getStatusAudience"],
        )?,
    ));
    let posts = op == "postStatus";
    let deliver = if posts {
        Some(deliverer(sdk, dynamo, false)?)
    } else {
        None
    };
    let ttl_secs = match std::env::var("STATUS_TTL_SECS") {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| format!("STATUS_TTL_SECS must be a number of seconds, got {v:?}"))?,
        _ => status::DEFAULT_STATUS_TTL_SECS,
    };
    Ok(leak(status::Deps {
        statuses,
        settings,
        deliver,
        // postStatus checks and attaches the poster's media (MEDIA_TABLE, MEDIA_BUCKET).
        media: if posts {
            Some(attach_deps(sdk, dynamo)?)
        } else {
            None
        },
        clock: &SystemClock,
        ttl_secs,
        throttle: if posts {
            Some(throttle(dynamo, |l| l.sends)?)
        } else {
            None
        },
    }))
}

/// `postStatus`, counted as `MessagesSent` of kind `status`.
async fn post_status_counted(
    deps: &courier_core::usecases::status::Deps<'_>,
    who: &courier_core::ports::DeviceCredential,
    p: courier_core::protocol::PostStatusParams,
) -> Result<serde_json::Value, courier_core::ApiError> {
    let reply = courier_core::usecases::status::post_status(deps, who, p).await?;
    crate::telemetry::count_by("MessagesSent", "Kind", "status", 1);
    Ok(reply)
}

fn media_store(dynamo: &aws_sdk_dynamodb::Client) -> Result<DynamoMedia, Error> {
    Ok(DynamoMedia::new(dynamo.clone(), required("MEDIA_TABLE")?))
}

fn media_objects(sdk: &aws_config::SdkConfig) -> Result<S3Objects, Error> {
    Ok(S3Objects::new(
        courier_aws::s3::client(sdk),
        required("MEDIA_BUCKET")?,
    ))
}

/// What `sendMessage` needs to check and record attachments.
fn attach_deps(
    sdk: &aws_config::SdkConfig,
    dynamo: &aws_sdk_dynamodb::Client,
) -> Result<media::AttachDeps<'static>, Error> {
    Ok(media::AttachDeps {
        media: leak(media_store(dynamo)?),
        objects: leak(media_objects(sdk)?),
    })
}

/// The `media` binary: `createMediaUpload`, `getMediaDownload`.
pub async fn media_service() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    fn media_deps(
        Aws { sdk, dynamo }: &Aws,
        op: &str,
    ) -> Result<&'static media::Deps<'static>, Error> {
        // getMediaDownload: media on a live status is for those who may see the status.
        let statuses = if op == "getMediaDownload" {
            Some(media::StatusLookup {
                statuses: leak(DynamoStatuses::new(
                    dynamo.clone(),
                    required("STATUS_TABLE")?,
                )),
                settings: leak(DynamoSettings::new(
                    dynamo.clone(),
                    required("USERS_TABLE")?,
                )),
            })
        } else {
            None
        };
        Ok(leak(media::Deps {
            media: leak(media_store(dynamo)?),
            objects: leak(media_objects(sdk)?),
            // Only getMediaDownload reads memberships.
            sessions: leak(DynamoSessions::new(
                dynamo.clone(),
                std::env::var("SESSIONS_TABLE").unwrap_or_default(),
            )),
            statuses,
            clock: &SystemClock,
            upload_quota: if op == "createMediaUpload" {
                Some(quota(dynamo, |l| l.media_upload_bytes)?)
            } else {
                None
            },
        }))
    }
    match op.as_str() {
        "createMediaUpload" => {
            serve_limited_action!(media_deps, "createMediaUpload", media::create_upload, |l| l
                .actions)
        }
        "getMediaDownload" => serve_action!(media_deps, "getMediaDownload", media::get_download),
        other => Err(unknown("media", other)),
    }
}

/// The `backups` binary: `createBackup`, `listBackups`, `getBackupDownload`.
pub async fn backups_service() -> Result<(), Error> {
    use courier_core::protocol::ListBackupsParams;
    use courier_core::usecases::backups;
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    fn backup_deps(Aws { sdk, dynamo }: &Aws) -> Result<&'static backups::Deps<'static>, Error> {
        // Only createBackup counts bytes (and only its function has RATE_LIMIT_TABLE).
        let quota = if required("COURIER_OPERATION")? == "createBackup" {
            Some(quota(dynamo, |l| l.backup_bytes)?)
        } else {
            None
        };
        Ok(leak(backups::Deps {
            backups: leak(backup_store(dynamo)?),
            objects: leak(media_objects(sdk)?),
            clock: &SystemClock,
            quota,
        }))
    }
    macro_rules! serve {
        ($deps:ident, $name:literal, $body:expr) => {
            serve_lazily!(|aws| {
                let $deps = backup_deps(aws)?;
                Ok(ws(move |event| async move {
                    routes::action($name, &event, $body).await
                }))
            })
        };
    }
    match op.as_str() {
        "createBackup" => serve_lazily!(|aws| {
            let deps = backup_deps(aws)?;
            let limit = per_device(&aws.dynamo, |l| l.actions)?;
            Ok(ws(move |event| async move {
                routes::action("createBackup", &event, |who, p| async move {
                    limit.take(&who).await?;
                    backups::create_backup(deps, &who, p).await
                })
                .await
            }))
        }),
        "listBackups" => serve!(
            deps,
            "listBackups",
            |who, _: ListBackupsParams| async move { backups::list_backups(deps, &who).await }
        ),
        "getBackupDownload" => serve!(deps, "getBackupDownload", |who, p| async move {
            backups::get_backup_download(deps, &who, p).await
        }),
        other => Err(unknown("backups", other)),
    }
}
