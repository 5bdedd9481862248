//! Adapter tests of the DynamoDB repositories against DynamoDB Local (see [`support`] for how it
//! is found or started). Every test creates its own uniquely named tables, as template.yaml
//! defines them, so the tests run in parallel against one server.

mod accounts;
mod backups;
mod blocks;
mod concurrency;
mod connections;
mod deletion;
mod disappearing;
mod groups;
mod keys;
mod links;
mod media;
mod messages;
mod presence;
mod rate_limits;
mod registrations;
mod sessions;
mod settings;
mod statuses;
mod support;
