#!/bin/bash
# Spark against the default engine on the 1M bench database; each command timed with /usr/bin/time.
export LOYALTY_DATABASE_URL=sqlite:////tmp/s1m/bench.db
cd /work/main
run() { name=$1; shift; /usr/bin/time -f "$name %e s %M KB" python -m loyalty "$@" > /tmp/spark1m-$name.json 2>>/tmp/spark1m-$name.err; tail -1 /tmp/spark1m-$name.err; }
run export export parquet --out /tmp/lake1m --json
run export-again export parquet --out /tmp/lake1m --json
for a in "kpis --from 2026-10-01 --to 2026-11-01" "retention" "rfm"; do
  n=$(echo $a | cut -d' ' -f1)
  run $n-default analyze $a --json
  run $n-spark-db analyze $a --engine spark --json
  run $n-spark-parquet analyze $a --engine spark --parquet /tmp/lake1m --json
  cmp /tmp/spark1m-$n-default.json /tmp/spark1m-$n-spark-db.json && echo "$n: spark-db same"
  cmp /tmp/spark1m-$n-default.json /tmp/spark1m-$n-spark-parquet.json && echo "$n: spark-parquet same"
done
