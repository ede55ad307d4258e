//! Post-processors: add special tokens around an encoded sequence. Packing several
//! documents into one sample is the tokenize stage's job; this is for single texts.

pub trait PostProcessor: Send + Sync {
    fn process(&self, ids: &mut Vec<u32>);
}

/// BERT's single-sequence template: `[CLS] ids [SEP]`.
pub struct ClsSep {
    pub cls: u32,
    pub sep: u32,
}

impl PostProcessor for ClsSep {
    fn process(&self, ids: &mut Vec<u32>) {
        ids.insert(0, self.cls);
        ids.push(self.sep);
    }
}
