"""coreutils, tar, find, du and the shell itself on the prefix: shim vs tmpfs oracle.

Each test is one /bin/sh script ($P the prefix, $W the work dir, $OUT outside the prefix); errors
go to stdout (2>&1) so their messages are compared too.  ls output is cut to mode, links, size and
name (inode numbers, owners' names and times are not shared by the two runs).
"""

LS = "ls -la --time-style=+T"
# mode, links, size, name (+ "-> target"): fields 1, 2, 5 and 7.. of `ls -l --time-style=+T`.
# A `..` entry is cut to its name: it may be the prefix root, whose mode is tested on its own.
LS_CUT = ("awk '$1 == \"total\" {next} $7 == \"..\" {print \"..\"; next} "
          "{s=$1\" \"$2\" \"$5; for (i=7;i<=NF;i++) s=s\" \"$i; print s}'")


def test_mkdir_p_cp_r_mv_rm_rf(sc):
    sc.compare(sc.shell(f'''
set -u
mkdir -p $P/a/b/c $P/a/e
echo one > $P/a/1; printf 'two\\n2\\n' > $P/a/b/2; : > $P/a/b/c/empty
ln -s ../1 $P/a/b/up
cp -r $P/a $P/copy
cp -a $P/a $P/copy_a
cp -r /usr/share/doc/coreutils $P/doc
cp $P/a/1 $OUT/one.out
mkdir $OUT/tree; echo t > $OUT/tree/t
cp -r $OUT/tree $P/tree_in
mv $P/copy $P/moved
mv $P/moved/b $P/moved_b
mv $P/moved_b $OUT/moved_out
mv $OUT/moved_out $P/moved_back
mv $P/a/1 $P/a/one
mv -T $P/copy_a $P/copy_T
mv $P/a/one $P/a/e/
echo "== errors"
mkdir $P/a 2>&1
mkdir $P/x/y 2>&1
cp $P/nope $P/x 2>&1
mv $P/nope $P/x 2>&1
rm $P/a 2>&1
rmdir $P/a 2>&1
rm -r $P/nope 2>&1
cp -r $P/a $P/a/e/inner 2>&1
echo "== rm -rf"
rm -rf $P/doc $P/moved
rm -rf $P/nope
rm -f $P/a/b/c/empty
echo "== listing"
{LS} -R $P/a $P/copy_T $P/moved_back $P/tree_in | {LS_CUT}
find $OUT -printf '%P %y %s\\n' | sort
'''))


def test_ls_la_shows_names_sizes_and_types(sc):
    sc.compare(sc.shell(f'''
mkdir -p $P/sub/dir
printf 12345 > $P/sub/five; ln -s five $P/sub/sl; ln $P/sub/five $P/sub/hard
mkfifo $P/sub/fifo; chmod 640 $P/sub/five; chmod 1777 $P/sub/dir
{LS} $P/sub | {LS_CUT}
{LS} -d $P/sub/dir | {LS_CUT}
ls -A $P; ls -1 $P/sub; ls -F $P/sub
ls -la $P/nope 2>&1
ls -ld $P/sub/five/ 2>&1
ls $P/.. | sort
'''))


def test_dd_cat_stat_truncate_and_sha256sum(sc):
    sc.compare(sc.shell('''
dd if=/dev/zero of=$P/zero bs=4096 count=10 status=none
seq 1 30000 | head -c 102400 > $OUT/rnd
dd if=$OUT/rnd of=$P/rnd bs=1000 status=none
dd if=$P/rnd of=$P/part bs=1 skip=100 count=50 status=none
printf 'XXXX' | dd of=$P/zero bs=1 seek=5 conv=notrunc status=none
dd if=$P/nope of=$P/x status=none 2>&1
dd if=/dev/zero of=$P/direct bs=4096 count=4 oflag=direct status=none 2>&1; echo "dd direct rc=$?"
cmp $OUT/rnd $P/rnd && echo same
sha256sum $P/zero $P/part | sed "s| $P/| |"
echo hello > $P/hello; cat $P/hello $P/hello; cat $P/nope 2>&1
cat $P/hello >> $P/hello2; cat < $P/hello >> $P/hello2; tee $P/tee < $P/hello2 >/dev/null; cat $P/tee
stat -c '%n %s %F %a %h' $P/zero $P/rnd $P/part $P/hello2 $P/.. $W
stat -L -c '%s %F' $P/hello
ln -s hello $P/l; stat -c '%s %F %N' $P/l
stat -f -c '%T' $P
truncate -s 7 $P/hello2; truncate -s +3 $P/hello2; stat -c '%s' $P/hello2
touch -d @1000000000 $P/hello; stat -c '%Y' $P/hello
touch $P/new; test -e $P/new && echo new exists
[ -d $P ] && [ -f $P/hello ] && [ ! -e $P/nope ] && [ -L $P/l ] && [ -s $P/zero ] && echo tests ok
stat $P/nope 2>&1; echo "rc=$?"
'''))


def test_tar_create_from_prefix_and_extract_into_it(sc):
    sc.compare(sc.shell('''
mkdir -p $P/step_1/sub
printf 'a%.0s' $(seq 1 5000) > $P/step_1/a; echo b > $P/step_1/sub/b; ln -s a $P/step_1/la
touch -d @1500000000 $P/step_1/a $P/step_1/sub/b
tar -C $P -cf $OUT/from_prefix.tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner step_1
tar -tvf $OUT/from_prefix.tar | awk '{print $1, $3, $6, $7, $8}'
sha256sum < $OUT/from_prefix.tar
TAR="tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner"
$TAR -C $P -cf - step_1 | gzip -n > $P/inside.tgz
mkdir $P/extract $P/extract2
tar -C $P/extract -xf $OUT/from_prefix.tar
tar -C $P/extract2 -xzf $P/inside.tgz
cd $P && $TAR -cf rel.tar step_1 && mkdir x3 && cd x3 && tar -xf ../rel.tar && cd /
tar -C $P -cf - step_1 | tar -C $OUT -xf -
tar -cf $P/doc.tar -C /usr/share/doc coreutils && mkdir $P/doc && tar -C $P/doc -xf $P/doc.tar
diff -r $P/step_1 $P/extract/step_1 && diff -r $P/step_1 $P/x3/step_1 && echo extracted equal
diff -r /usr/share/doc/coreutils $P/doc/coreutils && echo doc equal
stat -c '%n %Y' $P/extract/step_1/a $OUT/step_1/a | sed "s|$W/||"
tar -C $P -xf $P/nope.tar 2>&1; echo "rc=$?"
'''))


def test_find_and_du_apparent_sizes(sc):
    sc.compare(sc.shell('''
mkdir -p $P/step_1/sub $P/step_2 $P/other
head -c 1000 /dev/zero > $P/step_1/a; head -c 70000 /dev/zero > $P/step_1/sub/b
head -c 3 /dev/zero > $P/step_2/.metadata; ln -s a $P/step_1/link
find $P | sort
find $P -mindepth 1 -printf '%P %y %s %m %n\\n' | sort
find $P -name '*.metadata' -type f
find $P -newer $P/step_1/a -type d -name nothing
find $P/step_2 -maxdepth 0 -empty; find $P/other -empty
cd $P && find . -type f | sort && cd $W && find ckpt -type l
du -ab $P | sort -k2
du -sb $P/step_1; du -b --max-depth=1 $P | sort -k2
du -sb $P/nope 2>&1
find $P -name b -delete; find $P -type f | sort
find $P/nope 2>&1; echo "rc=$?"
'''))


def test_shell_cd_pwd_globbing_and_redirections(sc):
    sc.compare(sc.shell('''
mkdir -p $P/step_1/sub $P/step_2 $P/step_10
cd $P/step_1/sub
pwd; pwd -P; /bin/pwd
echo rel > rel.txt; echo append >> rel.txt; cat rel.txt
ls
cd ..; /bin/pwd; cd ..; /bin/pwd; cd ..; /bin/pwd; pwd -P
echo $P/step_* | tr ' ' '\\n' | sed "s|$W/||"
cd $P && echo step_* && echo */sub && for f in step_*/sub/*; do echo "glob $f"; done
exec 3> $P/fd3; echo via-fd3 >&3; exec 3>&-; cat $P/fd3
read line < $P/step_1/sub/rel.txt; echo "read: $line"
cd $P/nope 2>&1 | sed 's/^.*: //'
'''))


def test_sed_i_install_mktemp_ln_readlink_realpath(sc):
    sc.compare(sc.shell('''
mkdir $P/d
printf 'alpha\\nbeta\\n' > $P/d/conf
sed -i 's/beta/gamma/' $P/d/conf; cat $P/d/conf
install -D -m 640 $P/d/conf $P/inst/deep/conf; stat -c '%a %s' $P/inst/deep/conf
t=$(mktemp -p $P tmp.XXXXXX); case "$t" in "$P"/tmp.??????) echo "mktemp in prefix";; *) echo "mktemp: $t";; esac
echo data > "$t"; mv "$t" $P/from_mktemp
td=$(mktemp -d -p $P); case "$td" in "$P"/tmp.*) echo "mktemp -d in prefix";; esac; rmdir "$td"
ln -s d/conf $P/sl; ln -sf conf $P/d/rel; ln $P/d/conf $P/hl
readlink $P/sl; readlink -f $P/sl | sed "s|$W/||"; realpath $P/d/rel | sed "s|$W/||"
realpath -m $P/a/../b | sed "s|$W/||"; realpath $P/.. | sed "s|$W|W|"
ln $P/d/conf $OUT/x 2>&1; ln -s $P/d/conf $OUT/y && cat $OUT/y
chmod -R go-rwx $P/inst; stat -c '%a' $P/inst $P/inst/deep
sort -o $P/sorted $P/d/conf; cat $P/sorted
split -b 3 $P/d/conf $P/part.; ls $P | grep part
'''))


def test_prefix_root_rm_rf_and_mv_fail_like_a_mount_point(sc):
    sc.compare(sc.shell('''
mkdir -p $P/a; echo x > $P/a/x; echo y > $P/y
rm -rf $P 2>&1; echo "rm -rf rc=$?"
ls -A $P
mkdir -p $P/b
rmdir $P 2>&1; echo "rmdir rc=$?"
mv $P $OUT/gone 2>&1; echo "mv rc=$?"
rm -rf $P/*; ls -A $P; echo "rm star rc=$?"
'''))
