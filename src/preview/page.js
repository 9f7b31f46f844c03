(function(){
var R=JSON.parse(document.getElementById('rows').textContent);
var M=JSON.parse(document.getElementById('pagedata').textContent);
var N=R.length,V=new Int32Array(N),H=new Array(N),view=new Uint8Array(N);
for(var i=0;i<N;i++){var r=R[i];V[i]=M.groups[r[4]];H[i]=(r[0]+'\t'+r[1]+'\t'+r[2]+'\t'+M.cats[r[5]]).toLowerCase();if(i<M.own)view[i]=1;}
M.examples.forEach(function(i){if(i<N)view[i]=1;});
function $(id){return document.getElementById(id);}
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;if(text!==undefined)e.textContent=text;return e;}
var search=$('search'),list=$('list'),spacer=$('spacer'),body=document.body;
var matches=null,cur=-1,shownRow=-1,rowH=1,drawn={},filt=null;
$('summary').textContent=N+' mottagare · '+M.variants.length+' varianter · '+M.written+' meddelanden skrivna';
// Warnings and errors on top, each leading to its rows (found through a map of CSV lines:
// a list with thousands of shared addresses must not cost thousands of passes).
var notes=$('notes'),byLine=new Map(),SHOWN_NOTES=30;
for(var i2=0;i2<N;i2++)byLine.set(R[i2][3],i2);
function leads(n){return n.kind!=='err'&&((n.variant!==undefined&&n.variant!==null)||(n.line!==null&&byLine.has(n.line)));}
function noteEl(n){var b=el(leads(n)?'button':'div','note '+n.kind,n.text);if(leads(n))b.addEventListener('click',function(){noteFilter(n);});return b;}
M.notes.slice(0,SHOWN_NOTES).forEach(function(n){notes.appendChild(noteEl(n));});
if(M.notes.length>SHOWN_NOTES){var more=el('button','note warn','Visa alla '+M.notes.length+' varningar och fel');
more.addEventListener('click',function(){notes.removeChild(more);M.notes.slice(SHOWN_NOTES).forEach(function(n){notes.appendChild(noteEl(n));});});notes.appendChild(more);}
function rowsOfNote(n){var out=[];if(n.variant!==undefined&&n.variant!==null){for(var i=0;i<N;i++)if(V[i]===n.variant)out.push(i);return out;}
var at=byLine.get(n.line);if(at===undefined)return out;
if(n.column!==M.email_column)return [at];
var email=R[at][2];for(var j=0;j<N;j++)if(R[j][2]===email)out.push(j);return out;}
function noteFilter(n){filt={label:n.text,rows:rowsOfNote(n)};search.value='';refresh(true);}
// The variants.
var vrows=$('vrows'),vtrs=[];
M.variants.forEach(function(v,k){var tr=el('tr');tr.dataset.v=k;tr.appendChild(el('td','','#'+(k+1)));tr.appendChild(el('td','n',String(v.n)));
var td=el('td','vals');v.vals.forEach(function(p){var s=el('span');s.appendChild(el('b','',p[0]+': '));s.appendChild(document.createTextNode(p[1]===''?'(tomt)':p[1]));td.appendChild(s);});
if(!v.vals.length)td.textContent='(samma för alla)';tr.appendChild(td);tr.appendChild(el('td','lang',v.lang));
tr.addEventListener('click',function(){variantFilter(k);});vrows.appendChild(tr);vtrs.push(tr);});
function variantFilter(k){var out=[];for(var i=0;i<N;i++)if(V[i]===k)out.push(i);filt={label:'Variant #'+(k+1)+' ('+M.variants[k].n+' mottagare)',rows:out,variant:k};search.value='';refresh(true);}
function mark(){vtrs.forEach(function(t,k){t.classList.toggle('on',!!filt&&filt.variant===k);});}
// Filtering: the search text against key, name, address and categories, within a filter.
function refresh(showFirst){var t0=performance.now(),q=search.value.trim().toLowerCase(),base=filt?filt.rows:null,out=[];
if(base){for(var j=0;j<base.length;j++)if(!q||H[base[j]].indexOf(q)>=0)out.push(base[j]);}
else if(q){for(var i=0;i<N;i++)if(H[i].indexOf(q)>=0)out.push(i);}
matches=(base||q)?out:null;var n=count();
$('count').textContent=(matches?n+' av ':'')+N+' mottagare';
var f=$('filter');f.textContent='';if(filt){f.appendChild(document.createTextNode(filt.label));var b=el('button','','Visa alla');b.addEventListener('click',function(){filt=null;refresh(false);});f.appendChild(b);}
mark();spacer.style.height=(n*rowH)+'px';list.scrollTop=0;cur=n?0:-1;draw(true);
body.dataset.searchMs=(performance.now()-t0).toFixed(1);
if(showFirst){if(n)show(at(0));else clear();}}
function count(){return matches?matches.length:N;}
function at(k){return matches?matches[k]:k;}
// The list draws only the rows in view: 100,000 rows are never 100,000 elements.
function draw(all){var n=count(),top=Math.max(0,Math.floor(list.scrollTop/rowH)-5),end=Math.min(n,top+Math.ceil(list.clientHeight/rowH)+10);
if(all){spacer.textContent='';drawn={};}
for(var k in drawn){if(k<top||k>=end){spacer.removeChild(drawn[k]);delete drawn[k];}}
for(var k2=top;k2<end;k2++){var i=at(k2),d=drawn[k2];if(!d){d=rowEl(i);d.style.top=(k2*rowH)+'px';d.dataset.k=k2;spacer.appendChild(d);drawn[k2]=d;}
d.classList.toggle('sel',k2===cur);d.classList.toggle('shown',i===shownRow);}}
function rowEl(i){var r=R[i],d=el('div','row');d.dataset.i=i;d.dataset.key=r[0];d.setAttribute('role','option');
[[r[0],'k'],[r[1],'n'],[r[2],'e'],[M.cats[r[5]],'c'],['#'+(V[i]+1),'v']].forEach(function(p){d.appendChild(el('span',p[1],p[0]));});
d.addEventListener('click',function(){cur=+d.dataset.k;show(i);draw(false);});return d;}
list.addEventListener('scroll',function(){draw(false);});
function move(k){var n=count();if(!n)return;cur=Math.max(0,Math.min(n-1,k));var y=cur*rowH,head=rowH;
if(y<list.scrollTop)list.scrollTop=y;else if(y+2*rowH+head>list.scrollTop+list.clientHeight)list.scrollTop=y+2*rowH+head-list.clientHeight;draw(false);}
function key(e){var page=Math.max(1,Math.floor(list.clientHeight/rowH)-2);
if(e.key==='ArrowDown'){move(cur+1);}else if(e.key==='ArrowUp'){move(cur-1);}else if(e.key==='PageDown'){move(cur+page);}else if(e.key==='PageUp'){move(cur-page);}
else if(e.key==='Enter'){if(cur>=0)show(at(cur));draw(false);}else return;e.preventDefault();}
search.addEventListener('keydown',key);list.addEventListener('keydown',key);
search.addEventListener('input',function(){refresh(true);});
// One message: its own file where it was written, else its variant's example, said so.
function show(i){var r=R[i],v=M.variants[V[i]],meta=$('meta');shownRow=i;meta.textContent='';
[['Till',r[1]?r[1]+' <'+r[2]+'>':r[2]],['Nyckel',r[0]+' · CSV-rad '+r[3]],['Variant','#'+(V[i]+1)+' ('+v.n+' mottagare) · språk '+v.lang],['Ämne',v.subject]].forEach(function(p){
meta.appendChild(el('div','k',p[0]+':'));meta.appendChild(el('div','',p[1]));});
var src=null;if(view[i])src='v'+i+'.html';else if(v.ex!==null&&view[v.ex]){src='v'+v.ex+'.html';
meta.appendChild(el('div','ex','Visar variantens exempel ('+R[v.ex][1]+', nyckel '+R[v.ex][0]+'): '+(M.mode==='variants'?'preview --variants skriver ett meddelande per variant.':'meddelandet till '+(r[1]||r[2])+' skrevs inte (--limit).')+' Texten är densamma utom kundens egna uppgifter.'));}
$('msg').src=src||'about:blank';if(!src)meta.appendChild(el('div','ex','Inget exempel skrevs för den här varianten.'));draw(false);}
function clear(){shownRow=-1;var meta=$('meta');meta.textContent='';meta.appendChild(el('div','none','Ingen mottagare matchar sökningen.'));$('msg').src='about:blank';}
// #q=TEXT searches, #v=N picks a variant, #note=N a warning, #keys=ArrowDown,Enter presses keys.
function fromHash(){var p=new URLSearchParams(location.hash.slice(1)),any=p.has('q')||p.has('v')||p.has('note');
if(p.has('v'))variantFilter((+p.get('v'))-1);else if(p.has('note')){var n=M.notes.filter(leads)[+p.get('note')];if(n)noteFilter(n);}
if(p.has('q')){search.value=p.get('q');refresh(true);}
if(p.has('keys')){if(!any&&N)show(0);any=true;p.get('keys').split(',').forEach(function(k){search.dispatchEvent(new KeyboardEvent('keydown',{key:k,bubbles:true,cancelable:true}));});}
return any;}
window.addEventListener('hashchange',fromHash);
if(N){var probe=rowEl(0);probe.style.visibility='hidden';spacer.appendChild(probe);rowH=probe.getBoundingClientRect().height||28;spacer.removeChild(probe);}
refresh(false);if(!fromHash()&&N)show(0);
body.dataset.readyMs=performance.now().toFixed(0);
})();
