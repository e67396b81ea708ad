//! The input of a DataFusion sub-plan that a continuous query runs once per
//! batch: a logical leaf ([`FeedNode`]) that stands where a source table
//! or an upstream operator was, planned into a physical leaf ([`FeedExec`])
//! that yields whatever batch the operator last put in its [`FeedSlot`].
//!
//! The leaf keeps the exact (qualified) schema of the node it replaces, so
//! the expressions above it resolve as they did in the whole query, and
//! DataFusion's optimizer and physical planner treat the fragment as any
//! other plan: every Sluice function, async model calls included, runs the
//! same implementation in batch and continuous queries.

use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::DFSchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};

/// Where an operator puts the batches its sub-plan reads next.
#[derive(Debug, Default)]
pub struct FeedSlot {
    batches: Mutex<Vec<RecordBatch>>,
}

impl FeedSlot {
    /// Sets the batch the next execution reads.
    pub fn put(&self, batch: RecordBatch) {
        self.put_all(vec![batch]);
    }

    /// Sets the batches the next execution reads (a join's kept rows).
    pub fn put_all(&self, batches: Vec<RecordBatch>) {
        *self.batches.lock().unwrap_or_else(|e| e.into_inner()) = batches;
    }

    fn current(&self) -> Vec<RecordBatch> {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The logical leaf standing for a continuous query's input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeedNode {
    /// Which slot feeds it (an index into the planner's slots).
    pub slot: usize,
    /// The schema of the node it replaces.
    pub schema: DFSchemaRef,
}

impl FeedNode {
    /// A leaf for slot `slot` with `schema`.
    pub fn plan(slot: usize, schema: DFSchemaRef) -> LogicalPlan {
        LogicalPlan::Extension(datafusion::logical_expr::Extension {
            node: Arc::new(FeedNode { slot, schema }),
        })
    }
}

impl PartialOrd for FeedNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.slot.partial_cmp(&other.slot)
    }
}

impl UserDefinedLogicalNodeCore for FeedNode {
    fn name(&self) -> &str {
        "StreamInput"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StreamInput: slot={}", self.slot)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// Plans [`FeedNode`]s into [`FeedExec`]s reading the given slots.
#[derive(Debug)]
pub struct FeedPlanner {
    slots: Vec<Arc<FeedSlot>>,
}

impl FeedPlanner {
    /// A planner for leaves numbered by their index in `slots`.
    pub fn new(slots: Vec<Arc<FeedSlot>>) -> Self {
        Self { slots }
    }
}

#[async_trait]
impl ExtensionPlanner for FeedPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session_state: &dyn Session,
        _planning: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(feed) = node.as_any().downcast_ref::<FeedNode>() else {
            return Ok(None);
        };
        let slot = self
            .slots
            .get(feed.slot)
            .ok_or_else(|| DataFusionError::Internal(format!("no feed slot {}", feed.slot)))?;
        Ok(Some(Arc::new(FeedExec::new(
            Arc::clone(slot),
            Arc::clone(feed.schema.inner()),
        ))))
    }
}

/// Yields the batch currently in its slot, once per execution.
#[derive(Debug)]
pub struct FeedExec {
    slot: Arc<FeedSlot>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl FeedExec {
    fn new(slot: Arc<FeedSlot>, schema: SchemaRef) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            slot,
            schema,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for FeedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FeedExec")
    }
}

impl ExecutionPlan for FeedExec {
    fn name(&self) -> &str {
        "FeedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let batches = self.slot.current();
        Ok(Box::pin(MemoryStream::try_new(
            batches,
            Arc::clone(&self.schema),
            None,
        )?))
    }
}
