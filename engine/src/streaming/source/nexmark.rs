//! `'connector' = 'nexmark'`: the Nexmark benchmark's Person, Auction and
//! Bid events (the `nexmark` crate, RisingWave's port of the reference
//! generator), one event kind per table:
//!
//! ```sql
//! CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT,
//!                   url TEXT, date_time TIMESTAMP, extra TEXT,
//!                   WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
//! WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid',
//!       'events_per_second' = '0', 'events' = '100000');
//! ```
//!
//! Columns are matched to the event's fields by name (any subset, any
//! order); `nexmark.table` is `bid`, `auction` or `person` (default: the
//! one the table's name starts with). Event times start at
//! `nexmark.base_time` (milliseconds, default 2026-01-01 00:00:00 UTC) and
//! advance at `nexmark.event_rate` events per second of event time
//! (default 10000, the generator's own default), whatever the wall-clock
//! pace. Events are a function of their position, as every generator's.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Auction, Bid, Event, EventType, Person};

use super::generator::{OptionBag, RowGenerator, invalid_option};

/// 2026-01-01 00:00:00 UTC in milliseconds: a fixed base time, so runs
/// agree (the crate defaults to the current time).
const DEFAULT_BASE_TIME_MS: u64 = 1_767_225_600_000;

/// The fields of each event kind.
const BID_FIELDS: [&str; 7] = [
    "auction",
    "bidder",
    "price",
    "channel",
    "url",
    "date_time",
    "extra",
];
const AUCTION_FIELDS: [&str; 10] = [
    "id",
    "item_name",
    "description",
    "initial_bid",
    "reserve",
    "date_time",
    "expires",
    "seller",
    "category",
    "extra",
];
const PERSON_FIELDS: [&str; 8] = [
    "id",
    "name",
    "email_address",
    "credit_card",
    "city",
    "state",
    "date_time",
    "extra",
];

/// One table's Nexmark events.
#[derive(Debug)]
pub struct NexmarkGenerator {
    schema: SchemaRef,
    kind: EventType,
    config: NexmarkConfig,
    /// Each column's index among the event's fields.
    fields: Vec<usize>,
}

impl NexmarkGenerator {
    /// A generator of table `name` with `schema`, configured by `options`.
    pub fn try_new(name: &str, schema: SchemaRef, options: &mut OptionBag) -> Result<Self> {
        let kind_name = options
            .take_any(&["nexmark.table", "table"])
            .unwrap_or_else(|| name.to_ascii_lowercase());
        let (kind, names): (EventType, &[&str]) = match kind_name.to_ascii_lowercase() {
            k if k.starts_with("bid") => (EventType::Bid, &BID_FIELDS),
            k if k.starts_with("auction") => (EventType::Auction, &AUCTION_FIELDS),
            k if k.starts_with("person") || k.starts_with("people") => {
                (EventType::Person, &PERSON_FIELDS)
            }
            other => {
                return Err(invalid_option(&format!(
                    "'nexmark.table' must be 'bid', 'auction' or 'person', got '{other}'"
                )));
            }
        };
        let mut config = NexmarkConfig {
            base_time: options
                .take_u64(&["nexmark.base_time"])?
                .unwrap_or(DEFAULT_BASE_TIME_MS),
            ..NexmarkConfig::default()
        };
        if let Some(rate) = options.take_u64(&["nexmark.event_rate"])? {
            if rate == 0 || rate > 100_000_000 {
                return Err(invalid_option(
                    "'nexmark.event_rate' must be from 1 to 100000000",
                ));
            }
            config.first_rate = rate as usize;
            config.next_rate = rate as usize;
        }
        let fields = schema
            .fields()
            .iter()
            .map(|field| {
                let name = field.name().to_ascii_lowercase();
                names.iter().position(|n| *n == name).ok_or_else(|| {
                    invalid_option(&format!(
                        "nexmark {kind_name} events have no field {}; they have {}",
                        field.name(),
                        names.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            schema,
            kind,
            config,
            fields,
        })
    }
}

/// The columns of a batch of events, all fields, in the kind's order.
fn event_columns(events: &[Event]) -> Vec<ArrayRef> {
    let int = |f: &dyn Fn(&Event) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(events.iter().map(f)))
    };
    let text = |f: &dyn Fn(&Event) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(f)))
    };
    let time = |f: &dyn Fn(&Event) -> u64| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from_iter_values(
            events.iter().map(|e| f(e) as i64),
        ))
    };
    match events.first() {
        Some(Event::Bid(_)) | None => {
            let b = as_bid;
            vec![
                int(&|e| b(e).map_or(0, |b| b.auction as i64)),
                int(&|e| b(e).map_or(0, |b| b.bidder as i64)),
                int(&|e| b(e).map_or(0, |b| b.price as i64)),
                text(&|e| b(e).map_or("", |b| b.channel.as_str())),
                text(&|e| b(e).map_or("", |b| b.url.as_str())),
                time(&|e| b(e).map_or(0, |b| b.date_time)),
                text(&|e| b(e).map_or("", |b| b.extra.as_str())),
            ]
        }
        Some(Event::Auction(_)) => {
            let a = as_auction;
            vec![
                int(&|e| a(e).map_or(0, |a| a.id as i64)),
                text(&|e| a(e).map_or("", |a| a.item_name.as_str())),
                text(&|e| a(e).map_or("", |a| a.description.as_str())),
                int(&|e| a(e).map_or(0, |a| a.initial_bid as i64)),
                int(&|e| a(e).map_or(0, |a| a.reserve as i64)),
                time(&|e| a(e).map_or(0, |a| a.date_time)),
                time(&|e| a(e).map_or(0, |a| a.expires)),
                int(&|e| a(e).map_or(0, |a| a.seller as i64)),
                int(&|e| a(e).map_or(0, |a| a.category as i64)),
                text(&|e| a(e).map_or("", |a| a.extra.as_str())),
            ]
        }
        Some(Event::Person(_)) => {
            let p = as_person;
            vec![
                int(&|e| p(e).map_or(0, |p| p.id as i64)),
                text(&|e| p(e).map_or("", |p| p.name.as_str())),
                text(&|e| p(e).map_or("", |p| p.email_address.as_str())),
                text(&|e| p(e).map_or("", |p| p.credit_card.as_str())),
                text(&|e| p(e).map_or("", |p| p.city.as_str())),
                text(&|e| p(e).map_or("", |p| p.state.as_str())),
                time(&|e| p(e).map_or(0, |p| p.date_time)),
                text(&|e| p(e).map_or("", |p| p.extra.as_str())),
            ]
        }
    }
}

fn as_bid(event: &Event) -> Option<&Bid> {
    match event {
        Event::Bid(bid) => Some(bid),
        _ => None,
    }
}

fn as_auction(event: &Event) -> Option<&Auction> {
    match event {
        Event::Auction(auction) => Some(auction),
        _ => None,
    }
}

fn as_person(event: &Event) -> Option<&Person> {
    match event {
        Event::Person(person) => Some(person),
        _ => None,
    }
}

impl RowGenerator for NexmarkGenerator {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn rows(&self, start: u64, rows: usize) -> Result<RecordBatch> {
        let events: Vec<Event> = EventGenerator::new(self.config.clone())
            .with_type_filter(self.kind)
            .with_offset(start)
            .take(rows)
            .collect();
        let all = event_columns(&events);
        let columns = self
            .fields
            .iter()
            .zip(self.schema.fields())
            .map(|(&index, field)| Ok(cast(&all[index], field.data_type())?))
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    #[test]
    fn bids_are_a_function_of_their_position() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("price", DataType::Int64, false),
            Field::new(
                "date_time",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
            Field::new("auction", DataType::Int64, false),
        ]));
        let mut options = OptionBag::new([("nexmark.table".into(), "bid".into())]);
        let generator = NexmarkGenerator::try_new("b", schema, &mut options).unwrap();
        options.finish("nexmark").unwrap();
        let whole = generator.rows(0, 50).unwrap();
        assert_eq!(generator.rows(20, 30).unwrap(), whole.slice(20, 30));
        assert_eq!(whole.num_rows(), 50);

        let mut options = OptionBag::new([]);
        let err = NexmarkGenerator::try_new(
            "bids",
            Arc::new(Schema::new(vec![Field::new(
                "nope",
                DataType::Int64,
                false,
            )])),
            &mut options,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no field nope"), "{err}");
    }
}
