//! [`Thinned`]: a series that keeps an even picture of a long run in bounded memory.

/// Points of a series, thinned evenly as they accumulate: the `n`-th point pushed is
/// kept when `n` is a multiple of the stride, and once `max` points are kept every other
/// one is dropped and the stride doubles. The kept points are always evenly spaced in
/// push order, and never more than `max`.
///
/// ```
/// use memwarden_runtime::Thinned;
///
/// let mut series = Thinned::new(8);
/// for n in 0..100u64 {
///     series.push(n);
/// }
/// assert!(series.points().len() < 8);
/// let gaps: Vec<u64> = series.points().windows(2).map(|w| w[1] - w[0]).collect();
/// assert!(gaps.windows(2).all(|g| g[0] == g[1]));
/// ```
#[derive(Debug, Clone)]
pub struct Thinned<T> {
    points: Vec<T>,
    /// The push number of each kept point.
    numbers: Vec<u64>,
    pushed: u64,
    stride: u64,
    max: usize,
}

impl<T> Thinned<T> {
    /// An empty series that keeps fewer than `max` points (at least 2).
    pub fn new(max: usize) -> Self {
        Thinned {
            points: Vec::new(),
            numbers: Vec::new(),
            pushed: 0,
            stride: 1,
            max: max.max(2),
        }
    }

    /// Adds the next point (kept or not, by the stride).
    pub fn push(&mut self, point: T) {
        let n = self.pushed;
        self.pushed += 1;
        if !n.is_multiple_of(self.stride) {
            return;
        }
        self.points.push(point);
        self.numbers.push(n);
        if self.points.len() >= self.max {
            self.stride *= 2;
            let stride = self.stride;
            let mut numbers = self.numbers.iter();
            self.points
                .retain(|_| numbers.next().is_some_and(|n| n.is_multiple_of(stride)));
            self.numbers.retain(|n| n.is_multiple_of(stride));
        }
    }

    /// The kept points, oldest first.
    pub fn points(&self) -> &[T] {
        &self.points
    }

    /// The kept points, oldest first.
    pub fn into_points(self) -> Vec<T> {
        self.points
    }

    /// How many points were pushed, kept or not.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }
}
