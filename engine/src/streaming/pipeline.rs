//! [`Pipeline`]: a continuous query's operators in the shape of its plan —
//! one chain per input, the [`JoinOperator`] where two inputs meet, and the
//! chain after it — and the routing of changes and signals through them.
//! A query over one table is a pipeline with one input chain and no join.

use datafusion::error::Result;

use super::checkpoint::StateSnapshot;
use super::join::JoinOperator;
use super::operator::{OperatorMetrics, StreamOperator};
use super::signal::{Change, CheckpointBarrier, InputIndex, Watermark};
use super::sink::EpochSink;

/// The operators of one continuous query.
pub struct Pipeline {
    /// Per input, the operators its rows go through first.
    inputs: Vec<Vec<Box<dyn StreamOperator>>>,
    /// Where the inputs meet (a query over two tables).
    join: Option<JoinOperator>,
    /// The operators after the join (or after the one input).
    tail: Vec<Box<dyn StreamOperator>>,
}

impl Pipeline {
    /// One input through `operators`.
    pub fn chain(operators: Vec<Box<dyn StreamOperator>>) -> Self {
        Self {
            inputs: vec![Vec::new()],
            join: None,
            tail: operators,
        }
    }

    /// Two inputs, each through its own operators, joined by `join`, then
    /// through `tail`.
    pub fn joined(
        inputs: [Vec<Box<dyn StreamOperator>>; 2],
        join: JoinOperator,
        tail: Vec<Box<dyn StreamOperator>>,
    ) -> Self {
        Self {
            inputs: inputs.into(),
            join: Some(join),
            tail,
        }
    }

    /// How many inputs (sources) the pipeline reads.
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// Handles a change from `input`; returns what reaches the end.
    pub async fn process_change(
        &mut self,
        input: InputIndex,
        change: Change,
    ) -> Result<Vec<Change>> {
        let changes = push(self.input_chain(input)?, 0, vec![change]).await?;
        self.after_input(input, changes).await
    }

    /// Event time of `input` has reached `watermark`. Returns what the
    /// operators emitted and the watermark that reaches the end, if it
    /// advanced there (a join passes on the lower of its inputs').
    pub async fn handle_watermark(
        &mut self,
        input: InputIndex,
        mut watermark: Watermark,
    ) -> Result<(Vec<Change>, Option<Watermark>)> {
        let mut out = Vec::new();
        for i in 0..self.input_chain(input)?.len() {
            let chain = self.input_chain(input)?;
            let mut emitted = Vec::new();
            watermark = chain[i].handle_watermark(watermark, &mut emitted).await?;
            let rest = push(chain, i + 1, emitted).await?;
            out.extend(self.after_input(input, rest).await?);
        }
        if let Some(join) = &mut self.join {
            match join.handle_watermark(input, watermark)? {
                Some(passed) => watermark = passed,
                None => return Ok((out, None)),
            }
        }
        for i in 0..self.tail.len() {
            let mut emitted = Vec::new();
            watermark = self.tail[i]
                .handle_watermark(watermark, &mut emitted)
                .await?;
            out.extend(push(&mut self.tail, i + 1, emitted).await?);
        }
        Ok((out, Some(watermark)))
    }

    /// Every change of `barrier`'s epoch has been handled: returns what the
    /// operators emit for it (an updating aggregate's new rows).
    pub async fn handle_checkpoint(&mut self, barrier: CheckpointBarrier) -> Result<Vec<Change>> {
        let mut out = Vec::new();
        for input in 0..self.inputs.len() {
            for i in 0..self.inputs[input].len() {
                let chain = self.input_chain(input)?;
                let mut emitted = Vec::new();
                chain[i].handle_checkpoint(barrier, &mut emitted).await?;
                let rest = push(chain, i + 1, emitted).await?;
                out.extend(self.after_input(input, rest).await?);
            }
        }
        if let Some(join) = &mut self.join {
            join.checkpoint_barrier(barrier);
        }
        for i in 0..self.tail.len() {
            let mut emitted = Vec::new();
            self.tail[i]
                .handle_checkpoint(barrier, &mut emitted)
                .await?;
            out.extend(push(&mut self.tail, i + 1, emitted).await?);
        }
        Ok(out)
    }

    /// The operators' counters, summed.
    pub fn metrics(&self) -> OperatorMetrics {
        let operators = self.inputs.iter().flatten().chain(&self.tail);
        let mut total = operators.fold(OperatorMetrics::default(), |total, op| {
            total.plus(op.metrics())
        });
        if let Some(join) = &self.join {
            total = total.plus(join.metrics());
        }
        total
    }

    /// Each step's description in order (the inputs' chains, the join,
    /// the tail), for `EXPLAIN`.
    pub fn describe(&self) -> Vec<String> {
        let mut steps: Vec<String> = Vec::new();
        for (input, chain) in self.inputs.iter().enumerate() {
            for operator in chain {
                steps.push(match self.join {
                    Some(_) => format!("input {input}: {}", operator.describe()),
                    None => operator.describe(),
                });
            }
        }
        if let Some(join) = &self.join {
            let kind = match (join.is_interval(), join.is_outer()) {
                (true, _) => "interval join (kept rows expire with the watermarks",
                (false, true) => {
                    "outer join (both sides' rows kept; a change re-joins the rows sharing its \
                     keys and emits the difference"
                }
                (false, false) => "join (both sides' rows kept",
            };
            let found = match join.is_indexed() {
                true => "; a change meets the kept rows with its keys, through a key index",
                false => "; a change meets every kept row: no equality key is a plain column",
            };
            steps.push(format!("{kind}{found})"));
        }
        steps.extend(self.tail.iter().map(|operator| operator.describe()));
        steps
    }

    /// Restores the operators and `sink` as a checkpoint has them: at start,
    /// and when a downstream region recovers.
    pub async fn restore_with_sink(
        &mut self,
        sink: &dyn EpochSink,
        operators: Vec<Option<StateSnapshot>>,
        sink_state: Option<StateSnapshot>,
    ) -> Result<()> {
        self.restore(operators)?;
        if let Some(snapshot) = sink_state {
            sink.restore(snapshot).await?;
        }
        Ok(())
    }

    /// Whether every operator's state can be checkpointed.
    pub fn checkpointable(&self) -> bool {
        self.inputs
            .iter()
            .flatten()
            .chain(&self.tail)
            .all(|operator| operator.checkpointable())
    }

    /// Every operator's state, in pipeline order: the inputs' chains, the
    /// join's two sides, the tail.
    pub fn snapshot(&mut self) -> Result<Vec<Option<StateSnapshot>>> {
        let mut snapshots = self
            .inputs
            .iter_mut()
            .flatten()
            .map(|operator| operator.snapshot())
            .collect::<Result<Vec<_>>>()?;
        if let Some(join) = &mut self.join {
            snapshots.extend(join.snapshot()?.map(Some));
        }
        for operator in &mut self.tail {
            snapshots.push(operator.snapshot()?);
        }
        Ok(snapshots)
    }

    /// Restores what [`Self::snapshot`] took, operator by operator.
    pub fn restore(&mut self, snapshots: Vec<Option<StateSnapshot>>) -> Result<()> {
        let joined = usize::from(self.join.is_some()) * 2;
        let heads: usize = self.inputs.iter().map(Vec::len).sum();
        if heads + joined + self.tail.len() != snapshots.len() {
            return Err(datafusion::error::DataFusionError::Execution(format!(
                "the checkpoint holds {} operators, the plan has {}",
                snapshots.len(),
                heads + joined + self.tail.len()
            )));
        }
        let mut snapshots = snapshots.into_iter();
        for operator in self.inputs.iter_mut().flatten() {
            if let Some(Some(snapshot)) = snapshots.next() {
                operator.restore(snapshot)?;
            }
        }
        if let Some(join) = &mut self.join {
            let left = snapshots.next().flatten().unwrap_or_default();
            let right = snapshots.next().flatten().unwrap_or_default();
            join.restore([left, right])?;
        }
        for operator in &mut self.tail {
            if let Some(Some(snapshot)) = snapshots.next() {
                operator.restore(snapshot)?;
            }
        }
        Ok(())
    }

    fn input_chain(&mut self, input: InputIndex) -> Result<&mut Vec<Box<dyn StreamOperator>>> {
        self.inputs.get_mut(input).ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!("no pipeline input {input}"))
        })
    }

    /// Takes what `input`'s chain produced through the join and the tail.
    async fn after_input(
        &mut self,
        input: InputIndex,
        changes: Vec<Change>,
    ) -> Result<Vec<Change>> {
        let changes = match &mut self.join {
            Some(join) => {
                let mut out = Vec::new();
                for change in changes {
                    join.process_change(input, change, &mut out).await?;
                }
                out
            }
            None => changes,
        };
        push(&mut self.tail, 0, changes).await
    }
}

/// Runs `changes` through `operators` from index `from` on.
pub async fn push(
    operators: &mut [Box<dyn StreamOperator>],
    from: usize,
    mut changes: Vec<Change>,
) -> Result<Vec<Change>> {
    for operator in operators.iter_mut().skip(from) {
        if changes.is_empty() {
            break;
        }
        let mut next = Vec::with_capacity(changes.len());
        for change in changes {
            operator.process_change(change, &mut next).await?;
        }
        changes = next;
    }
    Ok(changes)
}
