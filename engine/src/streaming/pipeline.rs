//! [`Pipeline`]: a continuous query's operators in the shape of its plan —
//! one chain per input, a [`Meeting`] wherever streams meet (a
//! [`KeyedJoin`] or a [`UnionOperator`] over inputs' or earlier
//! meetings' outputs), each meeting followed by its own chain — and the
//! routing of changes and signals through them. A query over one table is
//! a pipeline with one input chain and no meeting; a join of three tables
//! has two joins, the second taking the first's output as a side.

use datafusion::error::{DataFusionError, Result};

use super::checkpoint::StateSnapshot;
use super::join::KeyedJoin;
use super::operator::{OperatorMetrics, StreamOperator};
use super::signal::{Change, CheckpointBarrier, InputIndex, Watermark};
use super::sink::EpochSink;
use super::union::UnionOperator;

/// A stream inside a pipeline: what an input's chain or a meeting's chain
/// produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The output of input `n`'s chain.
    Input(InputIndex),
    /// The output of meeting `n`'s chain (a join's or a union's).
    Join(usize),
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stream::Input(n) => write!(f, "input {n}"),
            Stream::Join(n) => write!(f, "join {n}"),
        }
    }
}

/// What happens where streams meet.
pub enum Meeting {
    /// Two sides joined (boxed: a join's state is far larger than a
    /// union's).
    Join(Box<KeyedJoin>),
    /// Two or more sides' rows passed on together (`UNION ALL`).
    Union(UnionOperator),
}

impl Meeting {
    async fn process_change(
        &mut self,
        side: InputIndex,
        change: Change,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        match self {
            Meeting::Join(join) => join.process_change(side, change, out).await,
            Meeting::Union(union) => union.process_change(side, change, out).await,
        }
    }

    fn handle_watermark(
        &mut self,
        side: InputIndex,
        watermark: Watermark,
    ) -> Result<Option<Watermark>> {
        match self {
            Meeting::Join(join) => join.handle_watermark(side, watermark),
            Meeting::Union(union) => Ok(union.handle_watermark(side, watermark)),
        }
    }

    fn checkpoint_barrier(&mut self, barrier: CheckpointBarrier) {
        if let Meeting::Join(join) = self {
            join.checkpoint_barrier(barrier);
        }
    }

    /// How many snapshots it takes in a checkpoint (a join: one per side;
    /// a union keeps no state).
    fn snapshot_width(&self) -> usize {
        match self {
            Meeting::Join(_) => 2,
            Meeting::Union(_) => 0,
        }
    }

    fn snapshot(&mut self) -> Result<Vec<Option<StateSnapshot>>> {
        match self {
            Meeting::Join(join) => Ok(join.snapshot()?.map(Some).into()),
            Meeting::Union(_) => Ok(Vec::new()),
        }
    }

    fn restore(
        &mut self,
        snapshots: &mut impl Iterator<Item = Option<StateSnapshot>>,
    ) -> Result<()> {
        match self {
            Meeting::Join(join) => {
                let left = snapshots.next().flatten().unwrap_or_default();
                let right = snapshots.next().flatten().unwrap_or_default();
                join.restore([left, right])
            }
            Meeting::Union(_) => Ok(()),
        }
    }

    fn metrics(&self) -> OperatorMetrics {
        match self {
            Meeting::Join(join) => join.metrics(),
            Meeting::Union(_) => OperatorMetrics::default(),
        }
    }

    fn describe(&self) -> String {
        let join = match self {
            Meeting::Join(join) => join,
            Meeting::Union(union) => {
                return format!(
                    "union of {} sides (each side's rows pass through; no state)",
                    union.sides()
                );
            }
        };
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
        match join.parallelism() {
            1 => format!("{kind}{found})"),
            n => format!("{kind}{found}; keyed over {n} tasks by the equality keys)"),
        }
    }
}

/// Where streams meet, and the operators after it.
pub struct JoinStep {
    /// The join or union.
    pub meeting: Meeting,
    /// Its sides, in order (a join's left first).
    pub sides: Vec<Stream>,
    /// The operators its output goes through.
    pub chain: Vec<Box<dyn StreamOperator>>,
}

/// Which join (and which of its sides) a stream feeds; `None`: the
/// pipeline's output.
type Parent = Option<(usize, InputIndex)>;

/// The operators of one continuous query.
pub struct Pipeline {
    /// Per input, the operators its rows go through first.
    inputs: Vec<Vec<Box<dyn StreamOperator>>>,
    /// The joins, each after the joins its sides read (the last one is
    /// the pipeline's output).
    joins: Vec<JoinStep>,
    /// Per input, where its chain's output goes.
    input_parents: Vec<Parent>,
    /// Per join, where its chain's output goes.
    join_parents: Vec<Parent>,
}

impl Pipeline {
    /// One input through `operators`.
    pub fn chain(operators: Vec<Box<dyn StreamOperator>>) -> Self {
        Self {
            inputs: vec![operators],
            joins: Vec::new(),
            input_parents: vec![None],
            join_parents: Vec::new(),
        }
    }

    /// `inputs`, each through its own operators, meeting at `joins`: every
    /// input and every join but the last feeds exactly one later join.
    pub fn joined(inputs: Vec<Vec<Box<dyn StreamOperator>>>, joins: Vec<JoinStep>) -> Result<Self> {
        let mut input_parents = vec![None; inputs.len()];
        let mut join_parents = vec![None; joins.len()];
        let malformed = |why: String| DataFusionError::Internal(format!("a join tree {why}"));
        for (j, step) in joins.iter().enumerate() {
            for (side, stream) in step.sides.iter().copied().enumerate() {
                let parent = match stream {
                    Stream::Input(n) => input_parents.get_mut(n),
                    Stream::Join(n) if n < j => join_parents.get_mut(n),
                    Stream::Join(n) => {
                        return Err(malformed(format!("joins {n} before it exists")));
                    }
                }
                .ok_or_else(|| malformed(format!("reads a missing {stream}")))?;
                if parent.replace((j, side)).is_some() {
                    return Err(malformed(format!("reads {stream} twice")));
                }
            }
        }
        let unread = input_parents.iter().filter(|p| p.is_none()).count()
            + join_parents.iter().filter(|p| p.is_none()).count();
        if unread != 1 || join_parents.last().is_some_and(Option::is_some) {
            return Err(malformed("has more than one output".into()));
        }
        Ok(Self {
            inputs,
            joins,
            input_parents,
            join_parents,
        })
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
        self.upward(self.input_parents[input], changes).await
    }

    /// Event time of `input` has reached `watermark`. Returns what the
    /// operators emitted and the watermark that reaches the end, if it
    /// advanced there (a join passes on the lower of its sides').
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
            out.extend(self.upward(self.input_parents[input], rest).await?);
        }
        let mut at = self.input_parents[input];
        while let Some((j, side)) = at {
            match self.joins[j].meeting.handle_watermark(side, watermark)? {
                Some(passed) => watermark = passed,
                None => return Ok((out, None)),
            }
            let parent = self.join_parents[j];
            for i in 0..self.joins[j].chain.len() {
                let chain = &mut self.joins[j].chain;
                let mut emitted = Vec::new();
                watermark = chain[i].handle_watermark(watermark, &mut emitted).await?;
                let rest = push(chain, i + 1, emitted).await?;
                out.extend(self.upward(parent, rest).await?);
            }
            at = parent;
        }
        Ok((out, Some(watermark)))
    }

    /// Every change of `barrier`'s epoch has been handled: returns what the
    /// operators emit for it (an updating aggregate's new rows). Inputs go
    /// first, then the joins in order, so what a stream emits reaches its
    /// join before that join's own barrier.
    pub async fn handle_checkpoint(&mut self, barrier: CheckpointBarrier) -> Result<Vec<Change>> {
        let mut out = Vec::new();
        for input in 0..self.inputs.len() {
            for i in 0..self.inputs[input].len() {
                let chain = self.input_chain(input)?;
                let mut emitted = Vec::new();
                chain[i].handle_checkpoint(barrier, &mut emitted).await?;
                let rest = push(chain, i + 1, emitted).await?;
                out.extend(self.upward(self.input_parents[input], rest).await?);
            }
        }
        for j in 0..self.joins.len() {
            self.joins[j].meeting.checkpoint_barrier(barrier);
            let parent = self.join_parents[j];
            for i in 0..self.joins[j].chain.len() {
                let chain = &mut self.joins[j].chain;
                let mut emitted = Vec::new();
                chain[i].handle_checkpoint(barrier, &mut emitted).await?;
                let rest = push(chain, i + 1, emitted).await?;
                out.extend(self.upward(parent, rest).await?);
            }
        }
        Ok(out)
    }

    /// Every operator of the chains, inputs' first.
    fn chained(&self) -> impl Iterator<Item = &Box<dyn StreamOperator>> {
        let joins = self.joins.iter().flat_map(|step| &step.chain);
        self.inputs.iter().flatten().chain(joins)
    }

    /// The operators' counters, summed.
    pub fn metrics(&self) -> OperatorMetrics {
        let total = self
            .chained()
            .fold(OperatorMetrics::default(), |total, op| {
                total.plus(op.metrics())
            });
        self.joins
            .iter()
            .fold(total, |total, step| total.plus(step.meeting.metrics()))
    }

    /// Each step's description in order (the inputs' chains, then each
    /// join and its chain), for `EXPLAIN`.
    pub fn describe(&self) -> Vec<String> {
        let mut steps: Vec<String> = Vec::new();
        for (input, chain) in self.inputs.iter().enumerate() {
            for operator in chain {
                steps.push(match self.joins.is_empty() {
                    true => operator.describe(),
                    false => format!("input {input}: {}", operator.describe()),
                });
            }
        }
        let several = self.joins.len() > 1;
        for (j, step) in self.joins.iter().enumerate() {
            let description = step.meeting.describe();
            let sides: Vec<String> = step.sides.iter().map(Stream::to_string).collect();
            let of = match sides.len() {
                2 => format!("{} and {}", sides[0], sides[1]),
                _ => sides.join(", "),
            };
            steps.push(match several {
                true => format!("join {j} of {of}: {description}"),
                false => description,
            });
            steps.extend(step.chain.iter().map(|operator| match several {
                true => format!("join {j}: {}", operator.describe()),
                false => operator.describe(),
            }));
        }
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
        self.chained().all(|operator| operator.checkpointable())
    }

    /// Every operator's state, in pipeline order: the inputs' chains, then
    /// per join its two sides and its chain (with one join: the layout of
    /// checkpoints taken before joins could nest). An input's leading
    /// stateless stages are left out: at parallelism 1 they run in its
    /// chain, above it beside the source, so the layout is the same at any
    /// parallelism and a view rescales between 1 and more.
    pub fn snapshot(&mut self) -> Result<Vec<Option<StateSnapshot>>> {
        let mut snapshots = self
            .inputs
            .iter_mut()
            .flat_map(|chain| {
                chain
                    .iter_mut()
                    .skip_while(|operator| operator.is_stateless())
            })
            .map(|operator| operator.snapshot())
            .collect::<Result<Vec<_>>>()?;
        for step in &mut self.joins {
            snapshots.extend(step.meeting.snapshot()?);
            for operator in &mut step.chain {
                snapshots.push(operator.snapshot()?);
            }
        }
        Ok(snapshots)
    }

    /// Restores what [`Self::snapshot`] took, operator by operator; also
    /// takes the layout of checkpoints written before the leading stateless
    /// stages were left out (at the parallelism they were written at).
    pub fn restore(&mut self, snapshots: Vec<Option<StateSnapshot>>) -> Result<()> {
        let leading = |chain: &Vec<Box<dyn StreamOperator>>| {
            chain
                .iter()
                .take_while(|operator| operator.is_stateless())
                .count()
        };
        let heads: usize = self.inputs.iter().map(Vec::len).sum();
        let stateless_heads: usize = self.inputs.iter().map(leading).sum();
        let joined: usize = self
            .joins
            .iter()
            .map(|step| step.meeting.snapshot_width() + step.chain.len())
            .sum();
        let skip_leading = if snapshots.len() == heads - stateless_heads + joined {
            true
        } else if snapshots.len() == heads + joined {
            false
        } else {
            return Err(DataFusionError::Execution(format!(
                "the checkpoint holds {} operators, the plan has {}",
                snapshots.len(),
                heads - stateless_heads + joined
            )));
        };
        let mut snapshots = snapshots.into_iter();
        for chain in &mut self.inputs {
            let skipped = if skip_leading { leading(chain) } else { 0 };
            for operator in chain.iter_mut().skip(skipped) {
                if let Some(Some(snapshot)) = snapshots.next() {
                    operator.restore(snapshot)?;
                }
            }
        }
        for step in &mut self.joins {
            step.meeting.restore(&mut snapshots)?;
            for operator in &mut step.chain {
                if let Some(Some(snapshot)) = snapshots.next() {
                    operator.restore(snapshot)?;
                }
            }
        }
        Ok(())
    }

    fn input_chain(&mut self, input: InputIndex) -> Result<&mut Vec<Box<dyn StreamOperator>>> {
        self.inputs
            .get_mut(input)
            .ok_or_else(|| DataFusionError::Internal(format!("no pipeline input {input}")))
    }

    /// Takes `changes`, a stream's output, through the joins above it
    /// (from `at` on) and their chains; returns what reaches the end.
    async fn upward(&mut self, mut at: Parent, mut changes: Vec<Change>) -> Result<Vec<Change>> {
        while let Some((j, side)) = at {
            if changes.is_empty() {
                break;
            }
            let step = &mut self.joins[j];
            let mut joined = Vec::new();
            for change in changes {
                step.meeting
                    .process_change(side, change, &mut joined)
                    .await?;
            }
            changes = push(&mut step.chain, 0, joined).await?;
            at = self.join_parents[j];
        }
        Ok(changes)
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
